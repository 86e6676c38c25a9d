"""``/trade`` order entry: every answer equals the REST answer for the same input,
errors included; a handler never raises."""

from __future__ import annotations

import json

from api.market import MARKET_NAMESPACE, TRADE_NAMESPACE
from tests.stream.conftest import make_app
from tests.stream.helpers import Inbox, limit, market_order, subscribe, without_timestamps

BTC = "BTC-USDT"

# (kind, payload): kind "order" -> POST /order, "cancel" -> POST /cancel, "orders" -> POST /orders.
# Two fresh services get the same inputs in the same order, so ids agree.
SCRIPT = [
    ("order", limit("sell", "30000.00", "0.5")),
    ("order", limit("sell", "30001.00", "0.25")),
    ("order", {**limit("buy", "29999.00", "1"), "client_order_id": "mine-1"}),
    ("order", limit("buy", "30001.00", "0.6")),  # crosses two levels
    ("order", limit("buy", "30000.5", "0.1")),  # off the tick grid
    ("order", {"symbol": BTC, "side": "buy", "order_type": "limit", "price": 29000.5, "quantity": "0.1"}),
    ("order", {"symbol": BTC, "side": "buy", "order_type": "limit", "price": 29000.25, "quantity": 0.001}),
    ("order", {"symbol": BTC, "side": "buy", "order_type": "limit", "price": 1e3, "quantity": "1"}),
    ("order", {"symbol": "DOGE-USDT", "side": "buy", "order_type": "limit", "price": "1", "quantity": "1"}),
    ("order", {"side": "buy", "order_type": "limit", "price": "1", "quantity": "1"}),
    ("order", {"symbol": BTC, "side": "hold", "order_type": "limit", "price": "1", "quantity": "1"}),
    ("order", {"symbol": BTC, "side": "buy", "order_type": "stop", "price": "1", "quantity": "1"}),
    ("order", {"symbol": BTC, "side": "buy", "order_type": "market", "price": "1", "quantity": "1"}),
    ("order", {"symbol": BTC, "side": "buy", "order_type": "limit", "quantity": "1"}),
    ("order", limit("buy", "-1.00", "1")),
    ("order", limit("buy", "0", "1")),
    ("order", limit("buy", "1.00", "0")),
    ("order", limit("buy", "1e3", "1")),
    ("order", limit("buy", "NaN", "1")),
    ("order", limit("buy", "1" * 60, "1")),
    ("order", {**limit("buy", "1.00", "1"), "client_order_id": 5}),
    ("order", {**limit("buy", "1.00", "1"), "client_order_id": "x" * 65}),
    ("order", [limit("buy", "1.00", "1")]),
    ("order", "buy 1 BTC"),
    ("order", None),
    ("order", limit("sell", "29999.00", "2", order_type="ioc")),
    ("order", limit("buy", "31000.00", "5", order_type="fok")),
    ("order", market_order("buy", "0.01")),
    ("order", market_order("sell", "0.01")),
    ("cancel", {"order_id": "3"}),  # filled by the IOC above
    ("cancel", {"order_id": "2"}),
    ("cancel", {"order_id": "2"}),  # already cancelled
    ("cancel", {"order_id": "99999"}),
    ("cancel", {"order_id": "abc"}),
    ("cancel", {"order_id": 1}),
    ("cancel", {}),
    ("cancel", ["2"]),
    ("orders", [limit("buy", "100.00", "1"), limit("buy", "100.001", "1"), market_order("sell", "0.5")]),
    ("orders", {"orders": [limit("sell", "200.00", "1")]}),
    ("orders", "nope"),
    ("orders", [limit("buy", "1.00", "1")] * 1001),
]


def _rest_answer(client, kind: str, payload):
    path = {"order": "/order", "cancel": "/cancel", "orders": "/orders"}[kind]
    response = client.post(path, data=json.dumps(payload), content_type="application/json")
    return response.status_code, response.get_json()


def _expected_status(answer) -> int:
    if isinstance(answer, list) or "error" not in answer:
        return 200
    return {
        "VALIDATION_ERROR": 400,
        "UNKNOWN_SYMBOL": 400,
        "ORDER_NOT_FOUND": 404,
        "ORDER_NOT_OPEN": 409,
        "INVALID_JSON": 400,
    }[answer["error"]["code"]]


def test_ws_order_entry_answers_exactly_like_rest(tmp_path):
    rest_app, _, _, rest_pub = make_app(tmp_path / "rest")
    ws_app, ws_socketio, _, ws_pub = make_app(tmp_path / "ws")
    try:
        http = rest_app.test_client()
        ws = ws_socketio.test_client(ws_app, namespace=TRADE_NAMESPACE)
        for kind, payload in SCRIPT:
            status, rest_answer = _rest_answer(http, kind, payload)
            ws_answer = ws.emit(kind, payload, namespace=TRADE_NAMESPACE, callback=True)
            assert without_timestamps(ws_answer) == without_timestamps(rest_answer), (kind, payload)
            assert status == _expected_status(rest_answer), (kind, payload, rest_answer)
        ws.disconnect(namespace=TRADE_NAMESPACE)
    finally:
        rest_pub.close()
        ws_pub.close()


def test_ws_order_report_shape(trade_client):
    answer = trade_client.emit("order", limit("buy", "100.00", "1"), namespace=TRADE_NAMESPACE, callback=True)
    assert answer["status"] == "new" and answer["order_id"] == "1"
    assert answer["price"] == "100.00" and answer["quantity"] == "1.00000"
    cancelled = trade_client.emit("cancel", {"order_id": "1"}, namespace=TRADE_NAMESPACE, callback=True)
    assert cancelled["status"] == "cancelled"


def test_ws_event_without_payload_is_a_validation_error(trade_client):
    for event in ("order", "cancel", "orders"):
        answer = trade_client.emit(event, namespace=TRADE_NAMESPACE, callback=True)
        assert answer["error"]["code"] == "VALIDATION_ERROR", event


def test_ws_orders_are_published_like_rest_orders(trade_client, app, socketio, market_client):
    box = Inbox(market_client(), socketio)
    subscribe(box.client, type="order_events", symbol=BTC)
    subscribe(box.client, type="trades")
    trade_client.emit("order", limit("sell", "100.00", "1"), namespace=TRADE_NAMESPACE, callback=True)
    report = trade_client.emit("order", market_order("buy", "1"), namespace=TRADE_NAMESPACE, callback=True)
    trades = box.wait_count("trade", 1)
    assert trades == report["trades"]
    events = box.wait_count("order_event", 4)
    assert events[-1] == {"event": "filled", "order": report}


def test_an_unexpected_failure_is_an_internal_error_envelope(trade_client, exchange, monkeypatch, caplog):
    def boom(body):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(exchange, "place_order", boom)
    answer = trade_client.emit("order", limit("buy", "1.00", "1"), namespace=TRADE_NAMESPACE, callback=True)
    assert answer["error"]["code"] == "INTERNAL_ERROR"
    assert "secret" not in str(answer) and "Traceback" not in str(answer)
    assert "secret detail" in caplog.text  # logged for the operator
    assert trade_client.is_connected(TRADE_NAMESPACE)


def test_market_handler_failure_is_an_internal_error_envelope(market_client, publisher, monkeypatch):
    def boom(sid, data):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(publisher, "subscribe", boom)
    client = market_client()
    answer = client.emit("subscribe", {"type": "trades"}, namespace=MARKET_NAMESPACE, callback=True)
    assert answer["error"]["code"] == "INTERNAL_ERROR" and "secret" not in str(answer)


def test_trade_clients_are_counted(app, socketio, publisher):
    client = socketio.test_client(app, namespace=TRADE_NAMESPACE)
    assert publisher.stats()["clients"][TRADE_NAMESPACE] == 1
    client.disconnect(namespace=TRADE_NAMESPACE)
    assert publisher.stats()["clients"][TRADE_NAMESPACE] == 0


# -- the same bytes both ways ----------------------------------------------------------
# JSON text that a Python object cannot express (literals, lone surrogate escapes,
# integers beyond every limit, nesting deeper than any encoder recurses), sent
# verbatim as the REST body and as the Socket.IO event's argument.
_ORDER = '{"symbol":"BTC-USDT","side":"buy","order_type":"limit","quantity":"1","price":"100.00"%s}'
LONG_INT = "1" * 5000  # beyond msgspec's range: REST's slow path
RAW_SCRIPT = [
    ("order", _ORDER % ""),
    ("order", ' {\n "symbol" : "BTC-USDT", "side":"sell","order_type":"limit","quantity":1,"price":100.0} '),
    ("cancel", '{"order_id":"1"}'),
    ("cancel", '{"order_id":"1"}'),  # already filled
    ("cancel", '{"order_id":%s}' % ("1" * 41)),  # the example
    ("cancel", '{"order_id":%s}' % ("9" * 20)),
    ("cancel", '{"order_id":' + LONG_INT + "}"),
    ("cancel", '{"order_id":-1}'),
    ("cancel", '{"order_id":1e400}'),
    ("cancel", '{"order_id":1.0}'),
    ("cancel", '{"order_id":"\\ud800"}'),
    ("cancel", '{"order_id":NaN}'),
    ("order", _ORDER.replace('"1"', "NaN") % ""),
    ("order", _ORDER.replace('"100.00"', "Infinity") % ""),
    ("order", _ORDER.replace('"100.00"', "-Infinity") % ""),
    ("order", _ORDER.replace('"1"', "1" * 41) % ""),
    ("order", _ORDER.replace('"1"', LONG_INT) % ""),
    ("order", _ORDER.replace('"1"', "1e400") % ""),
    ("order", _ORDER.replace('"buy"', '"\\ud800"') % ""),  # a lone surrogate
    ("order", '{"n":' + LONG_INT + ',"symbol":"BTC-USDT","side":"\\ud800"}'),  # ... after a long integer
    ("order", '{"symbol":"\\ud800","side":"buy"}'),
    ("order", '{"symbol":"\\udc00\\ud800","side":"buy"}'),
    ("order", _ORDER % ',"client_order_id":"\\ud83d\\ude00"'),  # a valid pair (an emoji)
    ("order", _ORDER % ',"client_order_id":"%s"' % ("x" * 70_000)),  # larger than REST takes
    ("order", "[" * 30_000 + "]" * 30_000),  # nested deeper than any parser allows, under 64 KiB
    ("order", '{"symbol":' + "[" * 30_000 + "]" * 30_000 + "}"),
    ("order", "[" * 100_000 + "]" * 100_000),  # the example: over 64 KiB
    ("orders", "[" * 100_000 + "]" * 100_000),  # ... under 1 MiB
    ("orders", "[" + _ORDER % "" + "," + "{" * 20_000 + "}"),
    ("order", '{"symbol":"BTC-USDT",}'),
    ("order", '{"symbol":'),
    ("order", '"\\u0000"'),
    ("order", "null"),
    ("orders", "[" + _ORDER % "" + "," + _ORDER.replace('"1"', "NaN") % "" + "]"),
]


def _raw_rest(client, kind: str, text: str):
    response = client.post("/" + kind, data=text.encode("utf-8"), content_type="application/json")
    assert response.mimetype == "application/json"
    return response.status_code, response.get_json()


def _raw_emit(socketio, client, kind: str, text: str):
    """Emit ``[kind, <text>]`` verbatim (bypassing the test client's encoder)."""
    client.acks = None
    socketio.server._handle_eio_message(client.eio_sid, f'2{TRADE_NAMESPACE},1["{kind}",{text}]')
    assert client.acks is not None, "no acknowledgement"
    args = client.acks["args"]
    return args[0] if len(args) == 1 else args


def _expected_status_raw(answer) -> int:
    if isinstance(answer, dict) and answer.get("error", {}).get("code") == "PAYLOAD_TOO_LARGE":
        return 413
    return _expected_status(answer)


def test_ws_order_entry_answers_exactly_like_rest_for_the_same_text(tmp_path, caplog):
    rest_app, _, rest_exchange, rest_pub = make_app(tmp_path / "rest")
    ws_app, ws_socketio, ws_exchange, ws_pub = make_app(tmp_path / "ws")
    try:
        http = rest_app.test_client()
        ws = ws_socketio.test_client(ws_app, namespace=TRADE_NAMESPACE)
        for kind, text in RAW_SCRIPT:
            status, rest_answer = _raw_rest(http, kind, text)
            ws_answer = _raw_emit(ws_socketio, ws, kind, text)
            assert without_timestamps(ws_answer) == without_timestamps(rest_answer), (kind, text[:80])
            assert status == _expected_status_raw(rest_answer), (kind, text[:80], rest_answer)
        # counted (and audited) alike, and nothing crashed on the way
        assert ws_exchange.rejections == rest_exchange.rejections > 20
        assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text
        ws.disconnect(namespace=TRADE_NAMESPACE)
    finally:
        rest_pub.close()
        ws_pub.close()


def test_market_subscribe_with_a_payload_that_is_not_json_gets_an_error_ack(app, socketio, market_client):
    """Before, the packet was dropped (a RecursionError) and the client got no answer."""
    client = market_client()
    for text in ("[" * 100_000 + "]" * 100_000, '{"type":"trades","depth":NaN}'):
        client.acks = None
        socketio.server._handle_eio_message(client.eio_sid, f'2{MARKET_NAMESPACE},1["subscribe",{text}]')
        assert client.acks is not None
        assert client.acks["args"][0]["error"]["code"] == "INVALID_JSON"
    assert client.emit("subscribe", {"type": "trades"}, namespace=MARKET_NAMESPACE, callback=True) == {
        "ok": True
    }
