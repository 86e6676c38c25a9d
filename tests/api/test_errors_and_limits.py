"""Error envelopes outside validation (404/405/500), the rate limit, CORS."""

from __future__ import annotations

import pytest

from api.ratelimit import RateLimiter
from tests.api.conftest import BTC

ORDER = {"symbol": BTC, "side": "buy", "order_type": "limit", "quantity": "1", "price": "1"}


def test_404_envelope(client):
    r = client.get("/definitely/not/here")
    assert r.status_code == 404
    assert r.get_json() == {"error": {"code": "NOT_FOUND", "message": "no such resource"}}


def test_405_envelope_keeps_allow_header(client):
    r = client.get("/order")
    assert r.status_code == 405
    assert r.get_json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert "POST" in r.headers["Allow"]


@pytest.mark.parametrize("debug", [False, True])
def test_unexpected_exception_is_a_500_envelope_without_traceback(make_app, monkeypatch, caplog, debug):
    app = make_app()
    app.debug = debug
    exchange = app.extensions["exchange"]

    def boom(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(exchange.engine, "submit", boom)
    r = app.test_client().post("/order", json=ORDER)
    assert r.status_code == 500
    body = r.get_data(as_text=True)
    assert r.get_json() == {
        "error": {"code": "INTERNAL_ERROR", "message": "internal error; the server log has the details"}
    }
    assert "Traceback" not in body and "secret" not in body and "RuntimeError" not in body
    assert "secret internal detail" in caplog.text  # ...but the log has it


def test_500_in_a_query_endpoint(make_app, monkeypatch):
    app = make_app()
    monkeypatch.setattr(app.extensions["exchange"], "statistics", lambda: 1 / 0)
    r = app.test_client().get("/statistics")
    assert r.status_code == 500 and r.get_json()["error"]["code"] == "INTERNAL_ERROR"


def test_bulk_element_that_crashes_is_an_error_element_not_a_500(make_app, monkeypatch):
    app = make_app()
    engine = app.extensions["exchange"].engine
    real = engine.submit

    def flaky(symbol, *args, **kwargs):
        if symbol == "ETH-USDT":
            raise RuntimeError("boom")
        return real(symbol, *args, **kwargs)

    monkeypatch.setattr(engine, "submit", flaky)
    r = app.test_client().post("/orders", json=[ORDER, dict(ORDER, symbol="ETH-USDT"), ORDER])
    assert r.status_code == 200
    results = r.get_json()
    assert results[0]["status"] == "new" and results[2]["status"] == "new"
    assert results[1]["error"]["code"] == "INTERNAL_ERROR"


def test_wsgi_guard_turns_errors_outside_flask_into_the_envelope(make_app):
    app = make_app()

    def broken(environ, start_response):
        raise RuntimeError("outside flask")

    app.wsgi_app.wsgi_app = broken
    r = app.test_client().get("/health")
    assert r.status_code == 500
    assert r.get_json()["error"]["code"] == "INTERNAL_ERROR"


def test_rate_limit_429_with_retry_after_and_headers(make_app):
    client = make_app(rate_limit=5).test_client()
    for i in range(5):
        r = client.get("/health")
        assert r.status_code == 200
        assert r.headers["X-RateLimit-Limit"] == "5"
        assert r.headers["X-RateLimit-Remaining"] == str(4 - i)
        assert int(r.headers["X-RateLimit-Reset"]) > 0
    r = client.post("/order", json=ORDER)
    assert r.status_code == 429
    error = r.get_json()["error"]
    assert error["code"] == "RATE_LIMITED"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert r.headers["X-RateLimit-Remaining"] == "0"
    # The refused order changed nothing.
    assert client.get("/health").status_code == 429
    assert make_app().extensions["exchange"].engine.statistics()["engine"]["orders"] == 0


def test_rate_limit_is_per_client_ip(make_app):
    client = make_app(rate_limit=2).test_client()
    for _ in range(2):
        assert client.get("/health", environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 200
    assert client.get("/health", environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 429
    assert client.get("/health", environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 200


def test_rate_limit_zero_means_off(make_app):
    client = make_app(rate_limit=0).test_client()
    r = client.get("/health")
    assert "X-RateLimit-Limit" not in r.headers
    assert all(client.get("/health").status_code == 200 for _ in range(50))


def test_rate_limiter_window_turns():
    now = [120.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert limiter.hit("a")[:2] == (True, 1)
    assert limiter.hit("a")[:2] == (True, 0)
    allowed, remaining, reset = limiter.hit("a")
    assert (allowed, remaining, reset) == (False, 0, 180)
    now[0] = 180.0
    assert limiter.hit("a")[:2] == (True, 1)
    assert limiter.refused == 1


def test_flask_limiter_variant_still_answers_the_envelope(make_app):
    client = make_app(rate_limit=1, rate_limiter="flask-limiter").test_client()
    assert client.get("/health").status_code == 200
    r = client.get("/health")
    assert r.status_code == 429
    assert r.get_json()["error"]["code"] == "RATE_LIMITED"
    assert "Retry-After" in r.headers


def test_preflight_cors(client):
    r = client.options(
        "/order",
        headers={"Origin": "http://x.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "Content-Type"},
    )  # fmt: skip
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] in ("*", "http://x.example")
