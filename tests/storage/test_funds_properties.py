"""Property: with balances, for any stream of owned orders, cancels,
deposits and withdrawals, crashing and recovering at any points gives back
exactly the engine state -- balances, locks and fees included -- with or
without snapshots, and the data dir verifies offline (conservation)."""

from __future__ import annotations

import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.order import BUY, FOK, IOC, LIMIT, MARKET, SELL
from storage import Store
from storage.verify import verify

from .funds_helpers import funded, funds_state, open_account, run_funded
from .helpers import state

pytestmark = pytest.mark.usefixtures("each_writer")

ACCOUNTS = 3
submit = st.tuples(
    st.just("submit"),
    st.integers(1, ACCOUNTS),
    st.sampled_from(["BTC-USDT", "ETH-USDT"]),
    st.sampled_from([BUY, SELL]),
    st.sampled_from([LIMIT, LIMIT, LIMIT, MARKET, IOC, FOK]),
    st.integers(1, 10),
    st.integers(97, 103),
    st.none(),
)
cancel = st.tuples(st.just("cancel"), st.integers(0, 1000))
transfer = st.tuples(
    st.sampled_from(["d", "w"]),
    st.integers(1, ACCOUNTS),
    st.sampled_from(["USDT", "BTC", "ETH"]),
    st.integers(1, 3_000_000),
)
crash = st.just(("crash",))
close = st.just(("close",))
stream = st.lists(st.one_of(submit, submit, submit, cancel, transfer, crash, close), max_size=50)
# small balances: orders and withdrawals are refused often (a buy of 10 lots at 1.00 locks 1,002,000 units)
FUNDING = {"USDT": 4_000_000, "BTC": 20, "ETH": 20}


def _fix_prices(cmd):
    if cmd[0] == "submit" and cmd[4] is MARKET:
        return (*cmd[:6], None, None)
    return cmd


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands=stream, snapshot_every=st.sampled_from([0, 3, 8]), policy=st.sampled_from(["batch", "off"]))
def test_recover_gives_back_the_balances_before(commands, snapshot_every, policy):
    data_dir = tempfile.mkdtemp(prefix="storage-funds-prop-")
    try:
        engine = funded()
        store = Store(data_dir, fsync=policy, snapshot_every=snapshot_every)
        store.recover(engine)
        for i in range(ACCOUNTS):
            open_account(engine, store, f"trader{i}", FUNDING)
        for cmd in [*commands, ("crash",)]:
            if cmd[0] in ("crash", "close"):
                before, funds = state(engine), funds_state(engine)
                store.abandon() if cmd[0] == "crash" else store.close(engine)
                engine = funded()
                store = Store(data_dir, fsync=policy, snapshot_every=snapshot_every)
                store.recover(engine)
                assert funds_state(engine) == funds
                assert state(engine) == before
                engine.check()
            else:
                run_funded(engine, store, [_fix_prices(cmd)])
        store.abandon()
        report = verify(data_dir, out=lambda *a: None)
        assert report["ok"], report["problems"]
        assert all(f["ok"] for f in report["funds"].values())
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
