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
