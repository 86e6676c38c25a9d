"""The order types beyond the four in the journal: submit records with their
13th field, amend ("a") and expire ("e") records, stops triggered inside a
record; recovery after a crash or a clean stop (snapshots in between) gives
the same engine, and ``storage.verify`` replays it identically."""

from __future__ import annotations

import json
import random

import pytest

from engine.errors import EngineError
from engine.order import (
    BUY,
    LIMIT,
    MARKET,
    SELL,
    STOP_LIMIT,
    STOP_LOSS,
    TAKE_PROFIT,
    TAKE_PROFIT_LIMIT,
)
from storage.journal import as_dict, decode, list_segments
from storage.verify import main as verify_main

from .helpers import fresh, state

pytestmark = pytest.mark.usefixtures("each_writer")

SYMBOL = "BNB-USDT"
T0 = 1_700_000_000_000_000_000


def journal(store, result, kind: str):
    if kind == "submit":
        return store.log_submit(result)
    if kind == "amend":
        return store.log_amend(result)
    if kind == "expire":
        return store.log_expire(result)
    return store.log_cancel(result)


def drive(engine, store, seed: int, count: int) -> dict:
    """A reproducible stream of every order type, amends, cancels and expiries,
    journaled as the service does. Returns counters of what happened."""
    rng = random.Random(seed)
    seen = {"triggered": 0, "amend": 0, "expire": 0, "pending": 0, "iceberg": 0, "quote": 0}
    clock = T0
    for _ in range(count):
        clock += 1_000
        op = rng.random()
        with engine.lock(SYMBOL):
            try:
                if op < 0.1:
                    due = engine.due_expiries(SYMBOL, clock)
                    if not due:
                        continue
                    result = engine.expire(due[0], timestamp=clock)
                    kind = "expire"
                    seen["expire"] += 1
                elif op < 0.25:
                    live = [o for o in engine.orders.values() if o.is_open]
                    if not live:
                        continue
                    order = rng.choice(live)
                    change = rng.choice(["quantity", "price", "stop_price"])
                    value = rng.randint(1, 12) if change == "quantity" else rng.randint(90, 110)
                    result = engine.amend(order.order_id, **{change: value}, timestamp=clock)
                    kind = "amend"
                    seen["amend"] += 1
                elif op < 0.32:
                    live = [o for o in engine.orders.values() if o.is_open]
                    if not live:
                        continue
                    result = engine.cancel(rng.choice(live).order_id, timestamp=clock)
                    kind = "cancel"
                else:
                    side = rng.choice((BUY, SELL))
                    kind = "submit"
                    choice = rng.random()
                    extra = {}
                    qty = rng.randint(1, 12)
                    price = rng.randint(95, 105)
                    if choice < 0.2:
                        order_type = rng.choice((STOP_LOSS, STOP_LIMIT, TAKE_PROFIT, TAKE_PROFIT_LIMIT))
                        extra["stop_price"] = rng.randint(93, 107)
                        if order_type not in (STOP_LIMIT, TAKE_PROFIT_LIMIT):
                            price = None
                    elif choice < 0.3:
                        order_type, extra["display_quantity"] = LIMIT, rng.randint(1, 3)
                        qty = rng.randint(4, 15)
                        seen["iceberg"] += 1
                    elif choice < 0.38:
                        order_type, extra["expire_time"] = LIMIT, clock + rng.randint(1, 30) * 1_000
                    elif choice < 0.43:
                        order_type, extra["post_only"] = LIMIT, True
                    elif choice < 0.5:
                        order_type, price, qty = MARKET, None, None
                        extra["quote_quantity"] = rng.randint(50, 2_000)
                        seen["quote"] += 1
                    elif choice < 0.58:
                        order_type, price = MARKET, None
                    else:
                        order_type = LIMIT
                    result = engine.submit_extended(
                        SYMBOL, side, order_type, qty, price, timestamp=clock, **extra
                    )
                    seen["pending"] += result.status.value == "pending"
                    seen["triggered"] += len(result.triggered)
            except EngineError:
                continue
            if kind == "amend":
                seen["triggered"] += len(result.triggered)
            ticket = journal(store, result, kind)
        store.wait(ticket)
        store.maybe_snapshot(engine)
    engine.check()
    return seen


@pytest.mark.parametrize("shutdown", ["crash", "clean"])
def test_new_order_types_survive_restart_exactly(tmp_path, shutdown):
    engine, store, _ = fresh(tmp_path, snapshot_every=97)
    seen = drive(engine, store, seed=7, count=700)
    assert all(seen.values()), seen  # every kind of event happened
    before = state(engine)
    assert engine.market(SYMBOL).stops.orders and engine.market(SYMBOL).book.shown
    store.abandon() if shutdown == "crash" else store.close(engine)
    again, store2, summary = fresh(tmp_path)
    again.check()
    assert state(again) == before
    store2.close(again)
    assert verify_main(["--data-dir", str(tmp_path)]) == 0


def test_records_of_the_new_kinds_read_back(tmp_path):
    engine, store, _ = fresh(tmp_path)
    drive(engine, store, seed=3, count=400)
    store.close(engine)
    ops = set()
    extras = 0
    for _, path in list_segments(str(tmp_path)):
        with open(path, "rb") as f:
            for line in f.read().splitlines():
                record = decode(line)
                ops.add(record.op)
                named = as_dict(json.loads(line))
                assert named["n"] == record.n and named["op"] == record.op
                if record.op == "s" and record.extras is not None:
                    extras += 1
                    assert named["extras"] == list(record.extras)
    assert ops == {"s", "c", "a", "e"} and extras


def test_plain_submit_records_keep_twelve_fields(tmp_path):
    engine, store, _ = fresh(tmp_path)
    with engine.lock(SYMBOL):
        ticket = store.log_submit(engine.submit(SYMBOL, BUY, LIMIT, 1, 100))
    store.wait(ticket)
    store.close(engine)
    (_, path), *_ = list_segments(str(tmp_path))
    with open(path, "rb") as f:
        command = json.loads(f.readline())[0]
    assert len(command) == 12
