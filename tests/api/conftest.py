"""Fixtures for the API tests: ``make_app`` -> ``app`` -> ``client`` -> ``api``.

Apps are built by the real factory in threading mode with a temporary data dir,
no rate limit and (unless a test asks for it) no durable store, and closed after
the test. ``api`` wraps the Flask test client with the few calls every test needs.
"""

from __future__ import annotations

import pytest

from api.app import close_app, create_app

BTC = "BTC-USDT"
# Deposits for test accounts that trade under --auth on (which trades with balances): far more
# than any of these tests spends, so that only the funds tests meet INSUFFICIENT_FUNDS.
FUNDED = {"USDT": "10000000", "BTC": "100", "ETH": "1000", "BNB": "1000", "SOL": "1000"}


@pytest.fixture
def make_app(tmp_path):
    apps = []

    def make(**overrides):
        config = {
            "async_mode": "threading",
            "data_dir": tmp_path / f"data{len(apps)}",
            "rate_limit": 0,
            "store": False,
        }
        config.update(overrides)
        app, _socketio = create_app(config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_app(app)


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


class Api:
    """Thin helpers over the test client; every call checks the JSON content type."""

    def __init__(self, client, app) -> None:
        self.client = client
        self.app = app

    def _json(self, response):
        assert response.mimetype == "application/json", response.data[:200]
        return response.get_json()

    def post(self, path: str, body, expect: int | None = 200):
        r = self.client.post(path, json=body)
        if expect is not None:
            assert r.status_code == expect, (r.status_code, r.data[:500])
        return self._json(r)

    def get(self, path: str, expect: int | None = 200):
        r = self.client.get(path)
        if expect is not None:
            assert r.status_code == expect, (r.status_code, r.data[:500])
        return self._json(r)

    def order(self, side, order_type, quantity, price=None, symbol=BTC, expect=200, **extra):
        body = {"symbol": symbol, "side": side, "order_type": order_type, "quantity": quantity}
        if price is not None:
            body["price"] = price
        body.update(extra)
        return self.post("/order", body, expect)

    def limit(self, side, quantity, price, **kw):
        return self.order(side, "limit", quantity, price, **kw)

    def cancel(self, order_id, expect=200):
        return self.post("/cancel", {"order_id": order_id}, expect)

    def book(self, symbol=BTC, levels=1000):
        return self.get(f"/book/{symbol}?levels={levels}")

    def state(self, symbol=BTC):
        """(sequence, bids, asks) of the whole book: what must not change on a rejection."""
        book = self.book(symbol)
        return book["sequence"], book["bids"], book["asks"]

    def check(self):
        """The engine's own invariant check (book never crossed, totals, index)."""
        self.app.extensions["exchange"].engine.check()


@pytest.fixture
def api(client, app):
    return Api(client, app)
