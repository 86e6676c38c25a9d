"""The publisher itself: book order restored from out-of-order reports, the hold
for reports that never come, the cost on the order path, failures isolated,
the latency figures, one lazily started task."""

from __future__ import annotations

import threading
import time

from api.market import Publisher
from engine.order import BUY, LIMIT, MARKET, SELL
from tests.stream.helpers import limit, subscribe

BTC = "BTC-USDT"
ETH = "ETH-USDT"


def lots(engine, symbol, quantity: str) -> int:
    return engine.spec(symbol).quantity_to_lots(quantity)


def ticks(engine, symbol, price: str) -> int:
    return engine.spec(symbol).price_to_ticks(price)


def run(engine, symbol, side, order_type, quantity, price=None):
    """Execute a command on the engine directly (the publisher is not told)."""
    p = None if price is None else ticks(engine, symbol, price)
    return engine.submit(symbol, side, order_type, lots(engine, symbol, quantity), p)


def test_reports_out_of_order_are_published_in_book_order(inbox, exchange, publisher):
    box = inbox()
    subscribe(box.client, type="trades", symbol=BTC)
    subscribe(box.client, type="order_events", symbol=BTC)
    engine = exchange.engine
    results = [
        run(engine, BTC, SELL, LIMIT, "1", "100.00"),
        run(engine, BTC, BUY, LIMIT, "0.4", "100.00"),
        run(engine, BTC, BUY, LIMIT, "0.6", "100.00"),
        run(engine, BTC, SELL, LIMIT, "1", "101.00"),
    ]
    cancel = engine.cancel(results[3].order.order_id)
    publisher.on_cancel(cancel)
    for result in reversed(results):
        publisher.on_submit(result)
    events = box.wait(lambda ev: len(ev) >= 10)
    box.settle(0.1)
    trades = box.of("trade")
    assert [t["trade_id"] for t in trades] == ["1", "2"]
    order_events = [(p["event"], p["order"]["order_id"]) for e, p in events if e == "order_event"]
    assert order_events == [
        ("accepted", "1"),
        ("accepted", "2"),
        ("partially_filled", "1"),
        ("filled", "2"),
        ("accepted", "3"),
        ("filled", "1"),
        ("filled", "3"),
        ("accepted", "4"),
        ("cancelled", "4"),
    ]


def test_a_report_that_never_comes_stalls_nothing_for_long(inbox, exchange, publisher):
    box = inbox()
    subscribe(box.client, type="trades", symbol=BTC)
    engine = exchange.engine
    run(engine, BTC, SELL, LIMIT, "1", "100.00")  # never reported
    crossing = run(engine, BTC, BUY, LIMIT, "1", "100.00")
    t0 = time.monotonic()
    publisher.on_submit(crossing)
    box.wait_count("trade", 1)
    assert time.monotonic() - t0 < 0.5
    assert publisher.stats()["released_after_hold"] == 1


def test_trades_of_all_symbols_in_trade_id_order(inbox, exchange, publisher):
    box = inbox()
    subscribe(box.client, type="trades")
    engine = exchange.engine
    publisher.on_submit(run(engine, BTC, SELL, LIMIT, "1", "100.00"))
    publisher.on_submit(run(engine, ETH, SELL, LIMIT, "1", "100.00"))
    btc = run(engine, BTC, BUY, MARKET, "1")  # trade 1
    eth = run(engine, ETH, BUY, MARKET, "1")  # trade 2
    publisher.on_submit(eth)  # reported first: held until trade 1 is out
    publisher.on_submit(btc)
    trades = box.wait_count("trade", 2)
    assert [(t["symbol"], t["trade_id"]) for t in trades] == [(BTC, "1"), (ETH, "2")]
    assert publisher.stats()["released_after_hold"] == 0


def test_order_processing_does_not_wait_for_subscribers(inbox, exchange, socketio, monkeypatch):
    boxes = [inbox() for _ in range(3)]
    for box in boxes:
        subscribe(box.client, type="trades")
        subscribe(box.client, type="bbo", symbol=BTC)
    real_emit = socketio.emit

    def slow_emit(*args, **kwargs):  # a fan-out that takes 50 ms per event
        time.sleep(0.05)
        return real_emit(*args, **kwargs)

    monkeypatch.setattr(socketio, "emit", slow_emit)
    t0 = time.perf_counter()
    for i in range(40):
        exchange.place_order(limit("sell" if i % 2 else "buy", "100.00", "1"))
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5, f"40 orders took {elapsed:.3f}s with a slow fan-out"


def test_a_failing_fan_out_loses_no_order_and_recovers(inbox, exchange, socketio, publisher, monkeypatch):
    box = inbox()
    subscribe(box.client, type="trades")
    real_emit = socketio.emit
    monkeypatch.setattr(socketio, "emit", lambda *a, **k: 1 / 0)
    report = exchange.place_order(limit("sell", "100.00", "1"))
    assert report["status"] == "new"
    socketio.sleep(0.1)
    monkeypatch.setattr(socketio, "emit", real_emit)
    exchange.place_order(limit("buy", "100.00", "1"))
    assert len(box.wait_count("trade", 1)) == 1
    assert publisher.stats()["background_task"] is True


def test_on_submit_is_cheap(exchange, publisher, inbox):
    for _ in range(5):
        subscribe(inbox().client, type="trades")
    result = run(exchange.engine, BTC, BUY, LIMIT, "1", "1.00")
    publisher.on_submit(result)  # starts the task
    n = 20_000
    t0 = time.perf_counter()
    for _ in range(n):
        publisher.on_submit(result)
    per_call = (time.perf_counter() - t0) / n
    assert per_call < 50e-6, f"on_submit took {per_call * 1e6:.1f} us"


def test_one_background_task_started_lazily(app, socketio, exchange, monkeypatch):
    started = []
    real = socketio.start_background_task

    def counting(target, *args, **kwargs):
        started.append(target)
        return real(target, *args, **kwargs)

    monkeypatch.setattr(socketio, "start_background_task", counting)
    publisher = Publisher(socketio, exchange.engine)
    assert started == [] and publisher.stats()["background_task"] is False
    result = run(exchange.engine, BTC, BUY, LIMIT, "1", "1.00")
    threads = [threading.Thread(target=publisher.on_submit, args=(result,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(started) == 1
    publisher.close()


def test_latency_figures(inbox, exchange, publisher):
    box = inbox()
    subscribe(box.client, type="trades")
    subscribe(box.client, type="bbo", symbol=BTC)
    engine = exchange.engine
    publisher.on_submit(run(engine, BTC, SELL, LIMIT, "1", "100.00"), received_ns=time.perf_counter_ns())
    received = time.time_ns() - 30_000_000  # an epoch receive time 30 ms ago is recognised
    publisher.on_submit(run(engine, BTC, BUY, LIMIT, "1", "100.00"), received_ns=received)
    box.wait_count("trade", 1)
    box.wait(lambda ev: any(e == "bbo" and p["sequence"] == 2 for e, p in ev))
    stats = publisher.stats()
    trade = stats["latency"]["trade_publication"]
    assert trade["count"] == 1 and 30 <= trade["p50_ms"] < 1000
    bbo = stats["latency"]["bbo_update"]
    assert bbo["count"] == 2 and bbo["max_ms"] >= 30
    assert stats["events_emitted"]["trade"] == 1
    assert stats["queue_depth"] == 0
    assert stats["connected_clients"] == 1
    assert stats["subscriptions"] == {"bbo:BTC-USDT": 1, "trades:*": 1}


def test_throttled_book_rooms_still_get_the_latest_state(inbox, exchange, publisher):
    publisher.min_interval_ns = publisher.interval_per_member_ns = 100_000_000  # one bbo per 100 ms
    box = inbox()
    subscribe(box.client, type="bbo", symbol=BTC)
    for i in range(30):
        exchange.place_order(limit("buy", f"{100 + i}.00", "1"))
        time.sleep(0.005)
    final = exchange.engine.markets[BTC].sequence
    box.wait(lambda ev: ev[-1][1]["sequence"] == final, timeout=1.0)
    sequences = [p["sequence"] for p in box.of("bbo")]
    assert sequences == sorted(set(sequences))
    assert len(sequences) < 10  # conflated
    assert box.of("bbo")[-1]["best_bid"]["price"] == "129.00"


def test_a_book_change_nobody_reported_is_published_within_a_tick(inbox, exchange, publisher):
    box = inbox()
    subscribe(box.client, type="l2_updates", symbol=BTC)
    run(exchange.engine, BTC, BUY, LIMIT, "1", "5.00")  # the engine changed; no report
    box.wait(lambda ev: ev[-1][1]["sequence"] == 1, timeout=0.5)
    assert box.of("l2_update")[-1]["bids"] == [["5.00", "1.00000"]]


class FakeWebSocket:
    """The parts of eventlet's RFC 6455 ``WebSocket`` that ``_sending_poll`` uses."""

    client = False

    def __init__(self, *, deflate: bool = False, fail: bool = False) -> None:
        self.writes: list[bytes] = []
        self.packed = 0
        self.deflate = deflate
        self.fail = fail

    def _get_permessage_deflate_enc(self):
        return object() if self.deflate else None

    def _pack_message(self, message, masked=False):
        self.packed += 1
        return b"[" + message.encode() + b"]"

    def _send(self, data: bytes) -> None:
        if self.fail:
            raise BrokenPipeError
        self.writes.append(data)


class FakeConnection:
    """An Engine.IO socket whose ``poll`` hands out prepared batches."""

    def __init__(self, batches, *, upgraded: bool = True) -> None:
        self.batches = list(batches)
        self.upgraded = upgraded

    def poll(self):
        batch = self.batches.pop(0)
        if isinstance(batch, Exception):
            raise batch
        return batch


def message(data: str):
    import engineio.packet

    return engineio.packet.Packet(engineio.packet.MESSAGE, data)


def test_the_writer_poll_sends_each_batch_with_one_write_until_the_end():
    from api.market import _sending_poll

    a, b, c = message("a"), message("b"), message("c")
    ws = FakeWebSocket()
    poll = _sending_poll(FakeConnection([[a, b], [c], []]), ws)
    assert poll() == []  # returns to Engine.IO's writer only at the end (it then closes)
    assert ws.writes == [b"[4a][4b]", b"[4c]"]


def test_a_room_packet_is_packed_once_for_all_members_but_not_for_compressing_ones():
    from api.market import _sending_poll

    pkt = message("trade")
    plain = [FakeWebSocket() for _ in range(3)]
    for ws in plain:
        _sending_poll(FakeConnection([[pkt], []]), ws)()
    deflating = FakeWebSocket(deflate=True)
    _sending_poll(FakeConnection([[pkt], []]), deflating)()
    assert sum(ws.packed for ws in plain) == 1  # the first member packed it
    assert [ws.writes for ws in plain] == [[b"[4trade]"]] * 3
    assert deflating.packed == 1 and deflating.writes == [b"[4trade]"]


def test_the_writer_poll_ends_on_a_failed_write_and_passes_the_queue_timeout_on():
    from engineio.exceptions import QueueEmpty

    from api.market import _sending_poll

    ws = FakeWebSocket(fail=True)
    assert _sending_poll(FakeConnection([[message("x")], [message("never")]]), ws)() == []
    timeout = _sending_poll(FakeConnection([QueueEmpty()]), FakeWebSocket())
    try:
        timeout()
        raise AssertionError("QueueEmpty swallowed")
    except QueueEmpty:
        pass


def test_before_the_upgrade_completes_poll_is_the_original():
    from api.market import _sending_poll

    pkt = message("polled")
    ws = FakeWebSocket()
    poll = _sending_poll(FakeConnection([[pkt]], upgraded=False), ws)
    assert poll() == [pkt] and ws.writes == []  # a failed upgrade goes on long-polling


def test_passes_are_paced_by_the_number_of_market_clients(exchange):
    from api.market import MARKET_NAMESPACE

    pub = Publisher(None, exchange.engine, min_interval=0.005, interval_per_member=0.0001)
    assert pub._pace_ns() == 0
    pub.client_connected(MARKET_NAMESPACE, 1)
    assert pub._pace_ns() == 100_000
    pub.client_connected(MARKET_NAMESPACE, 99)
    assert pub._pace_ns() == 5_000_000


def test_with_many_clients_a_burst_of_results_goes_out_in_few_passes(inbox, exchange, publisher):
    from api.market import MARKET_NAMESPACE

    box = inbox()
    subscribe(box.client, type="trades", symbol=BTC)
    publisher.client_connected(MARKET_NAMESPACE, 99)  # as if 100 were connected: 5 ms pace
    engine = exchange.engine
    passes = 0
    real_pass = publisher._pass

    def counting_pass():
        nonlocal passes
        passes += 1
        return real_pass()

    publisher._pass = counting_pass
    for _ in range(40):
        publisher.on_submit(run(engine, BTC, SELL, LIMIT, "1", "100.00"))
        publisher.on_submit(run(engine, BTC, BUY, LIMIT, "1", "100.00"))
        time.sleep(0.0005)
    box.wait_count("trade", 40)
    assert passes <= 20  # unpaced: about one pass per result (80)
    assert [t["trade_id"] for t in box.of("trade")] == [str(i) for i in range(1, 41)]


def test_coalescing_is_installed_only_in_eventlet_mode(socketio):
    from api.market import install_frame_coalescing

    assert socketio.server.eio.async_mode == "threading"
    assert install_frame_coalescing(socketio) is False


def test_concurrent_order_entry_publishes_everything_in_book_order(inbox, exchange, publisher):
    # What is checked is the order restored, not the 20 ms hold: on a busy machine an OS
    # thread can be descheduled for longer than that between the symbol lock and its report.
    publisher.hold_ns = 2_000_000_000
    box = inbox()
    subscribe(box.client, type="trades")
    subscribe(box.client, type="order_events")
    subscribe(box.client, type="bbo", symbol=BTC)

    def trader(k: int) -> None:
        for i in range(60):
            symbol = BTC if (i + k) % 2 else ETH
            side = "buy" if (i // 2 + k) % 2 else "sell"
            exchange.place_order(limit(side, f"{100 + (i % 3)}.00", "0.01", symbol=symbol))

    threads = [threading.Thread(target=trader, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine = exchange.engine
    total_trades = sum(m.stats.trades for m in engine.markets.values())
    assert total_trades > 0
    box.wait(lambda ev: sum(1 for e, _ in ev if e == "trade") >= total_trades, timeout=5)
    box.wait(lambda ev: sum(1 for e, _ in ev if e == "order_event") >= 240 + total_trades + 1, timeout=5)
    box.settle(0.2)
    trade_ids = [int(t["trade_id"]) for t in box.of("trade")]
    assert trade_ids == list(range(1, total_trades + 1))  # all, once, in trade_id order
    seen: dict[str, list[str]] = {}
    for event in box.of("order_event"):
        seen.setdefault(event["order"]["order_id"], []).append(event["event"])
    assert len(seen) == 240
    for events in seen.values():
        assert events[0] == "accepted" and events.count("accepted") == 1
        assert "filled" not in events[:-1]  # nothing after filled
    sequences = [b["sequence"] for b in box.of("bbo")]
    assert sequences == sorted(set(sequences)) and sequences[-1] == engine.markets[BTC].sequence
    assert publisher.stats()["queue_depth"] == 0


def test_a_late_report_with_trades_does_not_hold_the_next_one(inbox, exchange, publisher):
    box = inbox()
    subscribe(box.client, type="trades")
    publisher.hold_ns = 2_000_000_000  # a wrongful hold would show
    engine = exchange.engine
    publisher.on_submit(run(engine, BTC, SELL, LIMIT, "2", "100.00"))
    first = run(engine, BTC, BUY, LIMIT, "1", "100.00")  # trade 1
    second = run(engine, BTC, BUY, LIMIT, "1", "100.00")  # trade 2
    publisher._last_seq[BTC] = second.sequence - 1  # as if a gap had been given up on past ``first``
    publisher.on_submit(first)  # late: sent at once
    publisher.on_submit(second)  # in order: must not wait for trade 1 again
    t0 = time.monotonic()
    box.wait_count("trade", 2)
    assert time.monotonic() - t0 < 1.0
    assert [t["trade_id"] for t in box.of("trade")] == ["1", "2"]


def test_with_nobody_subscribed_results_are_dropped_and_a_later_stream_is_in_order(
    inbox, exchange, publisher
):
    engine = exchange.engine
    admitted = 0
    real_admit = publisher._admit

    def counting_admit(*args):
        nonlocal admitted
        admitted += 1
        return real_admit(*args)

    publisher._admit = counting_admit
    for _ in range(5):
        publisher.on_submit(run(engine, BTC, SELL, LIMIT, "1", "100.00"))
        publisher.on_submit(run(engine, BTC, BUY, LIMIT, "1", "100.00"))
    deadline = time.monotonic() + 2
    while publisher.stats()["results_published"] < 10:
        assert time.monotonic() < deadline, publisher.stats()
        time.sleep(0.005)
    assert admitted == 0  # not sequenced, nothing formatted: only the baselines moved
    box = inbox()
    subscribe(box.client, type="trades", symbol=BTC)
    publisher.on_submit(run(engine, BTC, SELL, LIMIT, "1", "100.00"))
    publisher.on_submit(run(engine, BTC, BUY, LIMIT, "1", "100.00"))
    box.wait_count("trade", 1)
    assert [t["trade_id"] for t in box.of("trade")] == ["6"]
    stats = publisher.stats()
    assert stats["released_after_hold"] == 0 and stats["reported_late"] == 0  # next in order, at once


def test_with_nobody_subscribed_a_result_wakes_nothing_and_a_first_subscriber_gets_only_later_ones(
    inbox, exchange, publisher
):
    engine = exchange.engine
    publisher.tick = 60.0  # no pass on its own during the test: only wake-ups
    publisher.on_submit(run(engine, BTC, SELL, LIMIT, "1", "100.00"))  # starts the task
    deadline = time.monotonic() + 5
    while publisher._queue or publisher.stats()["results_published"] < 1:
        assert time.monotonic() < deadline  # its first pass (nobody subscribed) drops it...
        time.sleep(0.005)
    time.sleep(0.02)  # ... and it goes on to wait a tick
    for _ in range(5):
        publisher.on_submit(run(engine, BTC, BUY, LIMIT, "1", "100.00"))
        publisher.on_submit(run(engine, BTC, SELL, LIMIT, "1", "100.00"))
        assert not publisher._wake.is_set()  # queued for the next tick's pass, no wake-up
    assert len(publisher._queue) == 10
    box = inbox()
    subscribe(box.client, type="trades", symbol=BTC)  # drops the ten before joining
    assert not publisher._queue
    publisher.on_submit(run(engine, BTC, BUY, LIMIT, "1", "100.00"))  # somebody listens: a wake-up
    box.wait_count("trade", 1)
    time.sleep(0.1)  # anything older that was going to come would have come by now
    assert [t["trade_id"] for t in box.of("trade")] == ["6"]  # none of the five before it
    assert publisher.stats()["reported_late"] == 0
