"""Streaming of the order types beyond the four: ``/trade`` entry and ``amend``
answer like REST; ``order_event`` ``triggered``, ``amended`` and the expiry's
``cancelled``; an iceberg's hidden part never in ``l2_update`` or ``bbo``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.market import TRADE_NAMESPACE
from tests.stream.conftest import make_app
from tests.stream.helpers import limit, market_order, subscribe, without_timestamps

BTC = "BTC-USDT"


def stop(side, kind, quantity, stop_price, price=None):
    body = {"symbol": BTC, "side": side, "order_type": kind, "quantity": quantity, "stop_price": stop_price}
    if price is not None:
        body["price"] = price
    return body


def iso_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


SCRIPT = [
    ("order", limit("sell", "100.00", "0.001")),
    ("order", limit("buy", "100.00", "0.001")),  # last price 100
    ("order", stop("sell", "stop_loss", "0.5", "95.00")),
    ("order", stop("sell", "stop_limit", "0.5", "95.00", "94.00")),
    ("order", stop("sell", "stop_loss", "0.5", "100.00")),  # would trigger at once
    ("order", {**limit("sell", "120.00", "1"), "display_quantity": "0.1"}),
    ("order", {**limit("buy", "90.00", "1"), "post_only": True}),
    ("order", {**limit("buy", "90.00", "1"), "expire_time": "2001-01-01T00:00:00Z"}),
    ("order", {"symbol": BTC, "side": "buy", "order_type": "market", "quote_quantity": "30"}),
    ("amend", {"order_id": "3", "stop_price": "96.00"}),
    ("amend", {"order_id": "7", "quantity": "2"}),
    ("amend", {"order_id": "7", "price": "99.999"}),
    ("amend", {"order_id": "1", "quantity": "2"}),  # filled
    ("amend", {"order_id": "424242", "quantity": "2"}),
    ("amend", {"order_id": "7"}),
    ("amend", "x"),
]


def test_ws_amend_and_new_types_answer_exactly_like_rest(tmp_path):
    rest_app, _, _, rest_pub = make_app(tmp_path / "rest")
    ws_app, ws_socketio, _, ws_pub = make_app(tmp_path / "ws")
    try:
        http = rest_app.test_client()
        ws = ws_socketio.test_client(ws_app, namespace=TRADE_NAMESPACE)
        for kind, payload in SCRIPT:
            rest_answer = http.post(f"/{kind}", json=payload).get_json()
            ws_answer = ws.emit(kind, payload, namespace=TRADE_NAMESPACE, callback=True)
            assert without_timestamps(ws_answer) == without_timestamps(rest_answer), (kind, payload)
        ws.disconnect(namespace=TRADE_NAMESPACE)
    finally:
        rest_pub.close()
        ws_pub.close()


def test_triggered_stop_events(rest, inbox):
    box = inbox()
    subscribe(box.client, type="order_events", symbol=BTC)
    rest.post("/order", json=limit("sell", "100.00", "0.001"))
    rest.post("/order", json=limit("buy", "100.00", "0.001"))
    pending = rest.post("/order", json=stop("sell", "stop_loss", "0.5", "95.00")).get_json()
    rest.post("/order", json=limit("buy", "94.00", "1"))
    rest.post("/order", json=limit("sell", "95.00", "0.001"))
    rest.post("/order", json=limit("buy", "95.00", "0.001"))

    def mine(events):
        return [p for e, p in events if e == "order_event" and p["order"]["order_id"] == pending["order_id"]]

    box.wait(lambda events: len(mine(events)) >= 3)
    names = [p["event"] for p in mine(box.pull())]
    assert names == ["accepted", "triggered", "filled"]
    accepted, triggered, filled = mine(box.pull())
    assert accepted["order"]["status"] == "pending"
    assert triggered["order"]["status"] == "new" and triggered["order"]["order_type"] == "stop_loss"
    assert filled["order"]["average_price"] == "94.00"


def test_amended_event(rest, inbox):
    box = inbox()
    subscribe(box.client, type="order_events", symbol=BTC)
    order = rest.post("/order", json=limit("buy", "99.00", "1")).get_json()
    answer = rest.post("/amend", json={"order_id": order["order_id"], "quantity": "0.5"}).get_json()
    events = box.wait_count("order_event", 2)
    assert events[-1] == {"event": "amended", "order": answer}


def test_expired_order_event(rest, inbox, exchange):
    box = inbox()
    subscribe(box.client, type="order_events", symbol=BTC)
    order = rest.post("/order", json={**limit("buy", "99.00", "1"), "expire_time": iso_in(0.2)}).get_json()
    events = box.wait_count("order_event", 2, timeout=5)
    assert events[-1]["event"] == "cancelled" and events[-1]["order"]["order_id"] == order["order_id"]
    assert events[-1]["order"]["cancel_reason"] == "expired"


def test_iceberg_hidden_part_never_in_l2_or_bbo(rest, inbox):
    box = inbox()
    subscribe(box.client, type="l2_updates", symbol=BTC)
    subscribe(box.client, type="bbo", symbol=BTC)
    subscribe(box.client, type="trades", symbol=BTC)
    rest.post("/order", json={**limit("sell", "101.00", "1"), "display_quantity": "0.1"})
    rest.post("/order", json=market_order("buy", "0.35"))
    box.settle(0.3)
    quantities = set()
    for event, payload in box.pull():
        if event == "l2_update":
            quantities |= {q for _, q in payload["asks"]}
        elif event == "bbo" and payload["best_ask"]:
            quantities.add(payload["best_ask"]["quantity"])
    assert quantities and quantities <= {"0.10000", "0.05000"}, quantities
