"""Property: for any command stream, crashing and recovering at any points
gives back exactly the engine state (byte-identical), with or without
snapshots, and the data dir verifies offline."""

from __future__ import annotations

import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import EngineError
from engine.matcher import MatchingEngine
from engine.order import BUY, FOK, IOC, LIMIT, MARKET, SELL
from storage import Store
from storage.verify import verify

from .helpers import state

pytestmark = pytest.mark.usefixtures("each_writer")

submit = st.tuples(
    st.just("submit"),
    st.sampled_from(["BTC-USDT", "ETH-USDT"]),
    st.sampled_from([BUY, SELL]),
    st.sampled_from([LIMIT, LIMIT, LIMIT, MARKET, IOC, FOK]),
    st.integers(1, 10),
    st.integers(97, 103),
    st.one_of(st.none(), st.text(max_size=6)),
)
cancel = st.tuples(st.just("cancel"), st.integers(0, 1000))
crash = st.just(("crash",))
close = st.just(("close",))
stream = st.lists(st.one_of(submit, submit, submit, cancel, cancel, crash, close), max_size=60)


def _apply(engine, store, cmd):
    if cmd[0] == "cancel":
        resting = [o for o in engine.orders.values() if o.is_open]
        if not resting:
            return
        order = resting[cmd[1] % len(resting)]
        with engine.lock(order.symbol):
            try:
                result = engine.cancel(order.order_id)
            except EngineError:
                return
            ticket = store.log_cancel(result)
    else:
        _, symbol, side, order_type, qty, price, coid = cmd
        with engine.lock(symbol):
            result = engine.submit(
                symbol, side, order_type, qty, None if order_type is MARKET else price, coid
            )
            ticket = store.log_submit(result)
    store.wait(ticket)
    store.maybe_snapshot(engine)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands=stream, snapshot_every=st.sampled_from([0, 2, 7]), policy=st.sampled_from(["batch", "off"]))
def test_recover_gives_back_the_state_before(commands, snapshot_every, policy):
    data_dir = tempfile.mkdtemp(prefix="storage-prop-")
    try:
        engine = MatchingEngine()
        store = Store(data_dir, fsync=policy, snapshot_every=snapshot_every)
        store.recover(engine)
        for cmd in [*commands, ("crash",)]:
            if cmd[0] in ("crash", "close"):
                before = state(engine)
                store.abandon() if cmd[0] == "crash" else store.close(engine)
                engine = MatchingEngine()
                store = Store(data_dir, fsync=policy, snapshot_every=snapshot_every)
                store.recover(engine)
                assert state(engine) == before
                engine.check()
            else:
                _apply(engine, store, cmd)
        store.abandon()
        report = verify(data_dir, out=lambda *a: None)
        assert report["ok"], report["problems"]
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
