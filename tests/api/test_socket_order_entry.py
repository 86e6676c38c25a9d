"""Order entry over Socket.IO (``/trade``) reaches the same ``Exchange`` as REST,
through the app's exact JSON codec: same reports, same envelopes."""

from __future__ import annotations

import pytest

from tests.api.conftest import BTC

pytest.importorskip("api.market")


@pytest.fixture
def trade(app):
    socketio = app.extensions["socketio"]
    client = socketio.test_client(app, namespace="/trade")
    assert client.is_connected("/trade")
    yield client
    client.disconnect(namespace="/trade")


def test_order_and_cancel_over_socketio_match_rest(trade, api):
    ack = trade.emit(
        "order",
        {"symbol": BTC, "side": "buy", "order_type": "limit", "quantity": 0.1, "price": "30000.10"},
        namespace="/trade",
        callback=True,
    )
    assert ack["status"] == "new" and ack["quantity"] == "0.10000" and ack["price"] == "30000.10"
    assert api.get(f"/order/{ack['order_id']}")["quantity"] == "0.10000"
    cancelled = trade.emit("cancel", {"order_id": ack["order_id"]}, namespace="/trade", callback=True)
    assert cancelled["status"] == "cancelled"


def test_bad_order_over_socketio_is_the_rest_envelope(trade, api):
    before = api.state()
    ack = trade.emit(
        "order", {"symbol": BTC, "side": "buy", "order_type": "market", "quantity": "1", "price": "1"},
        namespace="/trade", callback=True,
    )  # fmt: skip
    assert ack == {
        "error": {"code": "VALIDATION_ERROR", "message": "a market order takes no price", "field": "price"}
    }
    ack = trade.emit("order", {"symbol": "NOPE"}, namespace="/trade", callback=True)
    assert ack["error"]["code"] == "UNKNOWN_SYMBOL"
    assert api.state() == before


def test_bulk_over_socketio(trade):
    orders = [
        {"symbol": BTC, "side": "sell", "order_type": "limit", "quantity": "1", "price": "10"},
        {"symbol": BTC, "side": "buy", "order_type": "limit", "quantity": "1", "price": 0.001},
    ]
    ack = trade.emit("orders", orders, namespace="/trade", callback=True)
    assert ack[0]["status"] == "new"
    assert ack[1]["error"]["field"] == "price"


def test_trade_commands_share_the_rest_rate_limit_of_their_address(make_app):
    """``/trade`` was not limited at all: one client could send orders without end."""
    app = make_app(rate_limit=5)
    limiter = app.extensions["rate_limiter"]
    limiter._clock = lambda: 1_000_020.0  # one window for the whole test
    client = app.test_client()
    # (with the Flask client's environ: REMOTE_ADDR 127.0.0.1, the REST requests' address)
    trade = app.extensions["socketio"].test_client(app, namespace="/trade", flask_test_client=client)
    order = {"symbol": BTC, "side": "buy", "order_type": "limit", "quantity": "1", "price": "100.00"}
    for _ in range(3):
        assert client.post("/order", json=order).status_code == 200
    assert trade.emit("order", order, namespace="/trade", callback=True)["status"] == "new"
    assert trade.emit("cancel", {"order_id": "1"}, namespace="/trade", callback=True)["status"] == "cancelled"
    # the budget of 5 is spent: every command is refused with REST's envelope, and does nothing
    refused = client.post("/order", json=order)
    assert refused.status_code == 429
    for event, payload in (("order", order), ("cancel", {"order_id": "2"}), ("orders", [order])):
        ack = trade.emit(event, payload, namespace="/trade", callback=True)
        assert ack == refused.get_json(), event
        assert ack["error"]["code"] == "RATE_LIMITED"
    exchange = app.extensions["exchange"]
    assert len(exchange.book(BTC)["bids"]) == 1  # 4 orders placed, 1 cancelled
    assert exchange.engine.statistics()["engine"]["orders"] == 4
    assert trade.is_connected("/trade")
    # the next window: allowed again
    limiter._clock = lambda: 1_000_080.0
    assert trade.emit("cancel", {"order_id": "2"}, namespace="/trade", callback=True)["status"] == "cancelled"
    trade.disconnect(namespace="/trade")


def test_trade_commands_are_not_limited_without_a_rate_limit(make_app):
    app = make_app(rate_limit=0)
    trade = app.extensions["socketio"].test_client(app, namespace="/trade")
    for _ in range(30):
        assert trade.emit("cancel", {"order_id": "9"}, namespace="/trade", callback=True)["error"][
            "code"
        ] == ("ORDER_NOT_FOUND")
