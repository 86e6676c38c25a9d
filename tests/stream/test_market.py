"""``/market`` through Flask-SocketIO's test client (threading mode): subscription
acks and errors, snapshots, the events each command produces and their order,
conflation and sequences."""

from __future__ import annotations

import pytest

from api.market import MARKET_NAMESPACE
from tests.stream.helpers import limit, market_order, subscribe, unsubscribe, without_timestamps

BTC = "BTC-USDT"
ETH = "ETH-USDT"


def place(rest, body) -> dict:
    response = rest.post("/order", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


# -- acknowledgements ----------------------------------------------------------
@pytest.mark.parametrize(
    "data",
    [
        {"type": "l2_updates", "symbol": BTC},
        {"type": "l2_updates", "symbol": BTC, "depth": 1},
        {"type": "l2_updates", "symbol": BTC, "depth": 100},
        {"type": "bbo", "symbol": ETH},
        {"type": "trades", "symbol": BTC},
        {"type": "trades"},
        {"type": "trades", "symbol": None},
        {"type": "order_events", "symbol": BTC},
        {"type": "order_events"},
        {"type": "bbo", "symbol": BTC, "extra": "ignored"},
    ],
)
def test_subscribe_and_unsubscribe_answer_ok(market_client, data):
    client = market_client()
    assert subscribe(client, **data) == {"ok": True}
    assert unsubscribe(client, **data) == {"ok": True}


@pytest.mark.parametrize(
    "data, code, field",
    [
        ({"type": "candles", "symbol": BTC}, "VALIDATION_ERROR", "type"),
        ({"symbol": BTC}, "VALIDATION_ERROR", "type"),
        ({"type": 5, "symbol": BTC}, "VALIDATION_ERROR", "type"),
        ({"type": "bbo", "symbol": "DOGE-USDT"}, "UNKNOWN_SYMBOL", "symbol"),
        ({"type": "trades", "symbol": "btc-usdt"}, "UNKNOWN_SYMBOL", "symbol"),
        ({"type": "order_events", "symbol": ""}, "UNKNOWN_SYMBOL", "symbol"),
        ({"type": "bbo"}, "VALIDATION_ERROR", "symbol"),
        ({"type": "l2_updates"}, "VALIDATION_ERROR", "symbol"),
        ({"type": "bbo", "symbol": ["BTC-USDT"]}, "VALIDATION_ERROR", "symbol"),
        ({"type": "l2_updates", "symbol": BTC, "depth": 0}, "VALIDATION_ERROR", "depth"),
        ({"type": "l2_updates", "symbol": BTC, "depth": 101}, "VALIDATION_ERROR", "depth"),
        ({"type": "l2_updates", "symbol": BTC, "depth": -1}, "VALIDATION_ERROR", "depth"),
        ({"type": "l2_updates", "symbol": BTC, "depth": "10"}, "VALIDATION_ERROR", "depth"),
        ({"type": "l2_updates", "symbol": BTC, "depth": 2.5}, "VALIDATION_ERROR", "depth"),
        ({"type": "l2_updates", "symbol": BTC, "depth": True}, "VALIDATION_ERROR", "depth"),
    ],
)
def test_bad_subscription_is_refused_with_the_envelope(market_client, data, code, field):
    client = market_client()
    for verb in ("subscribe", "unsubscribe"):
        ack = client.emit(verb, data, namespace=MARKET_NAMESPACE, callback=True)
        assert set(ack) == {"error"}
        assert ack["error"]["code"] == code
        assert ack["error"]["field"] == field
        assert isinstance(ack["error"]["message"], str) and ack["error"]["message"]


@pytest.mark.parametrize("payload", [["bbo", BTC], "bbo", 42, None])
def test_a_payload_that_is_not_an_object_is_refused(market_client, payload):
    client = market_client()
    ack = client.emit("subscribe", payload, namespace=MARKET_NAMESPACE, callback=True)
    assert ack["error"]["code"] == "VALIDATION_ERROR"


def test_subscribe_without_payload_is_refused(market_client):
    client = market_client()
    ack = client.emit("subscribe", namespace=MARKET_NAMESPACE, callback=True)
    assert ack["error"]["code"] == "VALIDATION_ERROR"


def test_a_refused_subscription_subscribes_to_nothing(inbox, rest, publisher):
    box = inbox()
    subscribe(box.client, type="bbo", symbol="NOPE")
    subscribe(box.client, type="l2_updates", symbol=BTC, depth=0)
    subscribe(box.client, type="trades", symbol="NOPE")
    place(rest, limit("sell", "100.00", "1"))
    place(rest, limit("buy", "100.00", "1"))
    assert box.settle(0.2) == []
    assert publisher.stats()["subscriptions"] == {}


# -- snapshots ---------------------------------------------------------------
def test_l2_subscription_sends_the_book_at_once(inbox, rest):
    place(rest, limit("sell", "30001.00", "0.5"))
    place(rest, limit("sell", "30002.00", "0.25"))
    place(rest, limit("buy", "29999.00", "1"))
    box = inbox()
    box.settle(0.1)
    box.clear()
    assert subscribe(box.client, type="l2_updates", symbol=BTC) == {"ok": True}
    events = box.pull()  # no yield needed: sent by the handler, before the ack
    assert [e for e, _ in events] == ["l2_update"]
    book = rest.get(f"/book/{BTC}").get_json()
    assert without_timestamps(events[0][1]) == without_timestamps(book)
    assert set(events[0][1]) == {"timestamp", "symbol", "sequence", "bids", "asks"}


def test_l2_snapshot_honours_depth(inbox, rest):
    for i in range(5):
        place(rest, limit("buy", f"{100 + i}.00", "1"))
    box = inbox()
    box.settle(0.1)
    box.clear()
    subscribe(box.client, type="l2_updates", symbol=BTC, depth=2)
    (_, snapshot), *_ = box.pull()
    assert snapshot["bids"] == [["104.00", "1.00000"], ["103.00", "1.00000"]]
    assert without_timestamps(snapshot) == without_timestamps(rest.get(f"/book/{BTC}?levels=2").get_json())


def test_bbo_subscription_sends_the_bbo_at_once(inbox, rest):
    place(rest, limit("sell", "30001.00", "0.5"))
    place(rest, limit("buy", "29999.50", "1"))
    box = inbox()
    box.settle(0.1)
    box.clear()
    assert subscribe(box.client, type="bbo", symbol=BTC) == {"ok": True}
    events = box.pull()
    assert [e for e, _ in events] == ["bbo"]
    bbo = events[0][1]
    assert without_timestamps(bbo) == without_timestamps(rest.get(f"/bbo/{BTC}").get_json())
    assert bbo["spread"] == "1.50"


def test_snapshot_of_an_empty_book(inbox):
    box = inbox()
    subscribe(box.client, type="bbo", symbol=ETH)
    subscribe(box.client, type="l2_updates", symbol=ETH)
    events = box.pull()
    assert events[0][1]["best_bid"] is None and events[0][1]["best_ask"] is None
    assert events[0][1]["spread"] is None and events[0][1]["sequence"] == 0
    assert events[1][1]["bids"] == [] and events[1][1]["asks"] == []


def test_trades_and_order_events_send_no_snapshot(inbox):
    box = inbox()
    subscribe(box.client, type="trades", symbol=BTC)
    subscribe(box.client, type="order_events")
    assert box.settle(0.1) == []


def test_second_subscriber_gets_its_snapshot_and_nobody_a_duplicate(inbox, rest):
    first = inbox()
    subscribe(first.client, type="bbo", symbol=BTC)
    place(rest, limit("buy", "10.00", "1"))
    first.wait_count("bbo", 2)
    second = inbox()
    subscribe(second.client, type="bbo", symbol=BTC)
    place(rest, limit("buy", "11.00", "1"))
    first.wait(lambda ev: any(p["sequence"] == 2 for e, p in ev if e == "bbo"))
    second.wait(lambda ev: any(p["sequence"] == 2 for e, p in ev if e == "bbo"))
    first.settle(0.1)
    second.settle(0)
    assert [p["sequence"] for p in first.of("bbo")] == [0, 1, 2]
    assert [p["sequence"] for p in second.of("bbo")] == [1, 2]


# -- events after commands -----------------------------------------------------
def test_trade_event_equals_the_trade_in_the_order_report(inbox, rest):
    box = inbox()
    subscribe(box.client, type="trades", symbol=BTC)
    place(rest, limit("sell", "30000.00", "0.3"))
    place(rest, limit("sell", "30001.00", "0.3"))
    report = place(rest, limit("buy", "30001.00", "0.5"))
    trades = box.wait_count("trade", 2)
    assert trades == report["trades"]
    assert [t["price"] for t in trades] == ["30000.00", "30001.00"]


def test_order_events_of_a_crossing_limit_order(inbox, rest):
    box = inbox()
    subscribe(box.client, type="order_events", symbol=BTC)
    maker1 = place(rest, limit("sell", "100.00", "1"))
    maker2 = place(rest, limit("sell", "101.00", "1"))
    taker = place(rest, limit("buy", "101.00", "1.5"))
    events = box.wait_count("order_event", 6)
    assert [(e["event"], e["order"]["order_id"]) for e in events] == [
        ("accepted", maker1["order_id"]),
        ("accepted", maker2["order_id"]),
        ("accepted", taker["order_id"]),
        ("filled", maker1["order_id"]),
        ("partially_filled", maker2["order_id"]),
        ("filled", taker["order_id"]),
    ]
    assert events[0]["order"] == maker1  # accepted and resting: the POST /order answer
    accepted = events[2]["order"]
    assert accepted["status"] == "new" and accepted["filled_quantity"] == "0.00000"
    assert accepted["trades"] == [] and accepted["average_price"] is None
    assert events[3]["order"]["status"] == "filled" and events[3]["order"]["filled_quantity"] == "1.00000"
    assert events[4]["order"]["remaining_quantity"] == "0.50000"
    assert events[5]["order"] == taker  # the final event is the POST /order answer


def test_order_events_interleave_with_trades_per_fill(inbox, rest):
    box = inbox()
    subscribe(box.client, type="order_events", symbol=BTC)
    subscribe(box.client, type="trades", symbol=BTC)
    place(rest, limit("sell", "100.00", "1"))
    place(rest, limit("sell", "100.00", "1"))
    box.wait_count("order_event", 2)
    box.clear()
    place(rest, market_order("buy", "2"))
    box.wait(lambda ev: len(ev) >= 6)
    kinds = [e if e == "trade" else p["event"] for e, p in box.settle(0.05)]
    assert kinds == ["accepted", "trade", "filled", "trade", "filled", "filled"]


@pytest.mark.parametrize(
    "body, expected",
    [
        (limit("buy", "99.00", "1"), ["accepted"]),  # rests, nothing filled
        (limit("buy", "100.00", "2"), ["accepted", "filled", "partially_filled"]),  # rests the rest
        (limit("buy", "100.00", "2", order_type="ioc"), ["accepted", "filled", "cancelled"]),
        (limit("buy", "100.00", "2", order_type="fok"), ["accepted", "cancelled"]),  # killed
        (limit("buy", "100.00", "1", order_type="fok"), ["accepted", "filled", "filled"]),
        (market_order("buy", "3"), ["accepted", "filled", "cancelled"]),
        (market_order("sell", "1"), ["accepted", "cancelled"]),  # against an empty side
    ],
)
def test_which_order_events_each_submit_produces(inbox, rest, body, expected):
    box = inbox()
    subscribe(box.client, type="order_events", symbol=BTC)
    place(rest, limit("sell", "100.00", "1"))
    box.wait_count("order_event", 1)
    box.clear()
    report = place(rest, body)
    box.wait_count("order_event", len(expected))
    events = [p for e, p in box.settle(0.1) if e == "order_event"]
    assert [e["event"] for e in events] == expected
    assert events[-1]["order"]["order_id"] == report["order_id"]
    if len(expected) > 1:
        assert events[-1]["order"] == report


def test_cancel_produces_a_cancelled_event(inbox, rest):
    box = inbox()
    subscribe(box.client, type="order_events")
    order = place(rest, limit("buy", "50.00", "1", symbol=ETH))
    cancelled = rest.post("/cancel", json={"order_id": order["order_id"]}).get_json()
    events = box.wait_count("order_event", 2)
    assert events[1] == {"event": "cancelled", "order": cancelled}


def test_rejected_orders_produce_no_events(inbox, rest):
    box = inbox()
    subscribe(box.client, type="order_events")
    subscribe(box.client, type="trades")
    subscribe(box.client, type="bbo", symbol=BTC)
    box.clear()
    assert rest.post("/order", json=limit("buy", "100.001", "1")).status_code == 400
    assert rest.post("/cancel", json={"order_id": "999"}).status_code == 404
    assert box.settle(0.2) == []


def test_order_events_for_all_symbols_or_one(inbox, rest):
    everything = inbox()
    btc_only = inbox()
    subscribe(everything.client, type="order_events")
    subscribe(btc_only.client, type="order_events", symbol=BTC)
    place(rest, limit("buy", "10.00", "1", symbol=BTC))
    place(rest, limit("buy", "10.00", "1", symbol=ETH))
    place(rest, limit("buy", "11.00", "1", symbol=BTC))
    everything.wait_count("order_event", 3)
    btc_only.wait_count("order_event", 2)
    btc_only.settle(0.1)
    assert [e["order"]["symbol"] for e in everything.of("order_event")] == [BTC, ETH, BTC]
    assert [e["order"]["symbol"] for e in btc_only.of("order_event")] == [BTC, BTC]


def test_trades_for_all_symbols_arrive_once_in_trade_id_order(inbox, rest):
    box = inbox()
    subscribe(box.client, type="trades")
    subscribe(box.client, type="trades", symbol=BTC)  # overlapping rooms: still once each
    for symbol in (BTC, ETH, BTC):
        place(rest, limit("sell", "10.00", "1", symbol=symbol))
        place(rest, limit("buy", "10.00", "1", symbol=symbol))
    trades = box.wait_count("trade", 3)
    box.settle(0.1)
    trades = box.of("trade")
    assert [t["symbol"] for t in trades] == [BTC, ETH, BTC]
    ids = [int(t["trade_id"]) for t in trades]
    assert ids == sorted(ids) and len(set(ids)) == 3


def test_bbo_and_l2_follow_changes_with_increasing_sequences(inbox, rest):
    box = inbox()
    subscribe(box.client, type="bbo", symbol=BTC)
    subscribe(box.client, type="l2_updates", symbol=BTC, depth=5)
    place(rest, limit("buy", "100.00", "1"))
    box.wait(lambda ev: any(e == "bbo" and p["sequence"] == 1 for e, p in ev))
    place(rest, limit("sell", "101.00", "2"))
    place(rest, limit("buy", "101.00", "0.5"))
    final_bbo = rest.get(f"/bbo/{BTC}").get_json()
    final_book = rest.get(f"/book/{BTC}?levels=5").get_json()
    seq = final_bbo["sequence"]
    box.wait(
        lambda ev: (
            any(e == "bbo" and p["sequence"] == seq for e, p in ev)
            and any(e == "l2_update" and p["sequence"] == seq for e, p in ev)
        )
    )
    bbos, books = box.of("bbo"), box.of("l2_update")
    assert without_timestamps(bbos[-1]) == without_timestamps(final_bbo)
    assert without_timestamps(books[-1]) == without_timestamps(final_book)
    for events in (bbos, books):
        sequences = [p["sequence"] for p in events]
        assert sequences == sorted(set(sequences)), sequences  # strictly increasing
        assert sequences[0] == 0


def test_bbo_is_sent_after_a_change_deep_in_the_book(inbox, rest):
    """Documented choice: every book change sends a bbo (a higher sequence), also
    when the best prices stay put, so the last bbo held always equals GET /bbo."""
    place(rest, limit("buy", "100.00", "1"))
    box = inbox()
    subscribe(box.client, type="bbo", symbol=BTC)
    place(rest, limit("buy", "90.00", "1"))
    bbos = box.wait_count("bbo", 2)
    assert bbos[1]["sequence"] == bbos[0]["sequence"] + 1
    assert bbos[1]["best_bid"] == bbos[0]["best_bid"]


def test_commands_that_change_nothing_send_no_book_events(inbox, rest):
    place(rest, limit("sell", "100.00", "1"))
    box = inbox()
    subscribe(box.client, type="bbo", symbol=BTC)
    subscribe(box.client, type="l2_updates", symbol=BTC)
    box.clear()
    place(rest, limit("buy", "100.00", "5", order_type="fok"))  # killed
    place(rest, market_order("sell", "1"))  # no bids
    assert box.settle(0.2) == []


def test_conflation_keeps_the_latest_state_and_never_goes_back(inbox, rest, exchange):
    box = inbox()
    subscribe(box.client, type="l2_updates", symbol=BTC, depth=3)
    subscribe(box.client, type="bbo", symbol=BTC)
    for i in range(150):
        exchange.place_order(limit("buy" if i % 2 else "sell", f"{1000 + (i % 7) - 3 * (i % 2)}.00", "0.01"))
    final = exchange.engine.markets[BTC].sequence
    box.wait(
        lambda ev: (
            any(e == "l2_update" and p["sequence"] == final for e, p in ev)
            and any(e == "bbo" and p["sequence"] == final for e, p in ev)
        )
    )
    box.settle(0.1)
    for name in ("l2_update", "bbo"):
        sequences = [p["sequence"] for p in box.of(name)]
        assert sequences == sorted(set(sequences))
        assert sequences[-1] == final
        assert len(sequences) <= final + 1
    assert without_timestamps(box.of("l2_update")[-1]) == without_timestamps(
        rest.get(f"/book/{BTC}?levels=3").get_json()
    )


def test_l2_rooms_of_different_depths(inbox, rest):
    shallow, deep = inbox(), inbox()
    subscribe(shallow.client, type="l2_updates", symbol=BTC, depth=1)
    subscribe(deep.client, type="l2_updates", symbol=BTC, depth=20)
    for i in range(4):
        place(rest, limit("sell", f"{200 + i}.00", "1"))
    shallow.wait(lambda ev: any(p["sequence"] == 4 for _, p in ev))
    deep.wait(lambda ev: any(p["sequence"] == 4 for _, p in ev))
    assert shallow.of("l2_update")[-1]["asks"] == [["200.00", "1.00000"]]
    assert len(deep.of("l2_update")[-1]["asks"]) == 4


def test_unsubscribe_stops_the_events(inbox, rest, publisher):
    box = inbox()
    for kind in ("trades", "order_events"):
        subscribe(box.client, type=kind, symbol=BTC)
    subscribe(box.client, type="bbo", symbol=BTC)
    subscribe(box.client, type="l2_updates", symbol=BTC, depth=3)
    subscribe(box.client, type="l2_updates", symbol=BTC, depth=7)
    place(rest, limit("sell", "10.00", "1"))
    box.wait_count("order_event", 1)
    for kind in ("trades", "order_events", "bbo"):
        assert unsubscribe(box.client, type=kind, symbol=BTC) == {"ok": True}
    assert unsubscribe(box.client, type="l2_updates", symbol=BTC) == {"ok": True}  # every depth
    assert unsubscribe(box.client, type="bbo", symbol=ETH) == {"ok": True}  # never subscribed
    box.settle(0.1)
    box.clear()
    place(rest, limit("buy", "10.00", "1"))
    assert box.settle(0.2) == []
    assert publisher.stats()["subscriptions"] == {}


def test_disconnect_forgets_the_subscriptions(market_client, publisher):
    client = market_client()
    subscribe(client, type="trades")
    subscribe(client, type="bbo", symbol=BTC)
    stats = publisher.stats()
    assert stats["subscriptions"] == {"bbo:BTC-USDT": 1, "trades:*": 1}
    assert stats["clients"]["/market"] == 1
    client.disconnect(namespace=MARKET_NAMESPACE)
    stats = publisher.stats()
    assert stats["subscriptions"] == {} and stats["clients"]["/market"] == 0
