"""Balances, locks and fees after a restart, from a snapshot or a full replay,
after a clean stop, a crash and a SIGKILL: always those of a replay of the
journaled commands."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from engine.errors import InsufficientFunds
from engine.order import BUY, LIMIT, MARKET, SELL
from storage import Store
from storage.snapshot import list_snapshots
from storage.verify import canonical, verify

from .funds_helpers import funded, funded_commands, funds_state, move, open_account, run_funded
from .helpers import PROJECT_ROOT

pytestmark = pytest.mark.usefixtures("each_writer")

USDT = 10**10
FUNDING = {"USDT": 10 * USDT, "BTC": 20_000, "ETH": 2_000, "SOL": 2_000}


def _recover(data_dir, **kwargs):
    engine = funded()
    store = Store(str(data_dir), **kwargs)
    return engine, store, store.recover(engine)


def _everything(engine) -> tuple[dict, dict]:
    """What must survive: the funds (balances, locks, fees, totals) and the
    whole engine state (up to what a replay cannot reproduce, see canonical)."""
    engine.check()
    return funds_state(engine), canonical(engine.snapshot())


def _full_replay(data_dir, tmp_path) -> tuple[dict, dict]:
    """The state a replay of every record from 1 gives (a copy without snapshots)."""
    copy = tmp_path / "replay-copy"
    shutil.copytree(data_dir, copy, ignore=shutil.ignore_patterns("snapshot-*", "LOCK"))
    engine, store, summary = _recover(copy)
    assert summary["snapshot"] is None and summary["records_replayed"] == summary["last_record"]
    store.abandon()
    shutil.rmtree(copy)
    return _everything(engine)


def _build(data_dir, seed: int, count: int, **store_kwargs):
    engine = funded()
    store = Store(str(data_dir), **store_kwargs)
    store.recover(engine)
    for name in ("alice", "bob", "carol"):
        open_account(engine, store, name, FUNDING)
    done = run_funded(engine, store, funded_commands(seed, count))
    return engine, store, done


def test_a_scenario_of_fills_withdrawals_and_cancels_survives_a_restart(tmp_path):
    # accounts opened and funded (o, k, d), orders of several accounts in
    # several symbols, fills as maker and taker, a withdrawal, cancels
    data = tmp_path / "data"
    engine = funded()
    store = Store(str(data), snapshot_every=0)
    store.recover(engine)
    alice = open_account(engine, store, "alice", {"USDT": 100 * USDT, "BTC": 50_000})
    bob = open_account(engine, store, "bob", {"USDT": 100 * USDT, "ETH": 5_000})

    def order(account, symbol, side, order_type, quantity, price=None):
        with engine.lock(symbol):
            result = engine.submit(symbol, side, order_type, quantity, price, account_id=account)
            store.wait(store.log_submit(result))
        return result

    asks = [order(alice, "BTC-USDT", SELL, LIMIT, 1_000, 100 + i) for i in range(3)]
    order(bob, "BTC-USDT", BUY, LIMIT, 1_500, 101)  # takes 1,000 at 100.00 and 500 at 101.00
    order(bob, "ETH-USDT", SELL, LIMIT, 400, 250)
    order(alice, "ETH-USDT", BUY, MARKET, 300)  # a market buy: pays as it goes
    bid = order(alice, "ETH-USDT", BUY, LIMIT, 50, 240)
    move(engine, store, "w", bob, "BTC", 1_200)
    with pytest.raises(InsufficientFunds):  # bob holds 1,500 - 1,200 BTC units: not 400
        engine.withdraw(bob, "BTC", 400)
    for victim in (asks[2], bid):
        with engine.lock(victim.order.symbol):
            store.wait(store.log_cancel(engine.cancel(victim.order.order_id)))
    before = _everything(engine)
    ledger = engine.ledger
    assert ledger.fees["USDT"] > 0 and ledger.withdrawn["BTC"] == 1_200
    assert dict((a, (x, y)) for a, x, y in ledger.balances_of(bob))["BTC"] == (300, 0)
    assert any(locked for _a, _x, locked in ledger.balances_of(alice))  # the rest of an ask
    store.abandon()

    again, store2, summary = _recover(data)
    assert summary["records_replayed"] == summary["last_record"] > 10
    assert _everything(again) == before
    store2.close(again)  # a final snapshot, then a restart from it replays nothing
    third, store3, summary = _recover(data)
    assert summary["records_replayed"] == 0 and summary["snapshot"] is not None
    assert _everything(third) == before
    store3.abandon()


@pytest.mark.parametrize("seed, every, policy", [(1, 97, "batch"), (2, 250, "off"), (3, 41, "always")])
def test_restart_from_the_newest_snapshot_equals_the_live_engine_and_a_full_replay(
    tmp_path, seed, every, policy
):
    data = tmp_path / "data"
    engine, store, done = _build(data, seed, 700, fsync=policy, snapshot_every=every)
    assert done["journaled"] > 500 and done["refused"] > 0  # some orders could not be covered
    before = _everything(engine)
    store.abandon()  # a crash: the newest snapshot plus the records after it
    assert list_snapshots(str(data))
    again, store2, summary = _recover(data)
    assert summary["snapshot"] is not None and 0 < summary["records_replayed"] < every + 1
    assert _everything(again) == before
    store2.abandon()
    assert _full_replay(data, tmp_path) == before


def test_a_snapshot_then_more_records_restarts_to_the_same_balances(tmp_path):
    data = tmp_path / "data"
    engine, store, _ = _build(data, 4, 200, snapshot_every=0)
    path = store.snapshot(engine)
    at_snapshot = funds_state(engine)
    run_funded(engine, store, funded_commands(5, 200))
    assert funds_state(engine) != at_snapshot
    before = _everything(engine)
    store.abandon()
    again, store2, summary = _recover(data)
    assert summary["snapshot"] == path and summary["records_replayed"] > 100
    assert _everything(again) == before
    store2.abandon()
    assert _full_replay(data, tmp_path) == before


def test_an_account_refused_before_any_deposit_restarts_equal(tmp_path):
    # A refused order of an account that holds nothing makes it balance cells
    # that no record replays; snapshots leave out accounts with nothing.
    data = tmp_path / "data"
    engine = funded()
    store = Store(str(data), snapshot_every=0)
    store.recover(engine)
    open_account(engine, store, "empty", {})
    rich = open_account(engine, store, "rich", FUNDING)
    with pytest.raises(InsufficientFunds):
        engine.submit("BTC-USDT", BUY, LIMIT, 1, 100, account_id=1)
    with engine.lock("BTC-USDT"):
        store.wait(store.log_submit(engine.submit("BTC-USDT", SELL, LIMIT, 5, 100, account_id=rich)))
    store.snapshot(engine)
    move(engine, store, "d", 1, "USDT", USDT)
    before = _everything(engine)
    store.close(engine)
    assert _full_replay(data, tmp_path) == before
    report = verify(str(data), out=lambda *a: None)
    assert report["ok"], report["problems"]
    # the refused order's account holds nothing: no snapshot shows it, so the
    # snapshots are byte-identical to the replay (the engine used to list it empty)
    assert list(report["snapshots"].values()) == [
        "checksum ok, replay identical",
        "checksum ok, replay identical",
    ]
    assert not report["notes"]


def test_accounts_trading_on_threads_with_snapshots_racing_replay_exactly(tmp_path):
    """With funds one lock covers every symbol: the journal's order is the
    ledger's, whatever threads race, and snapshots fall between records."""
    data = tmp_path / "data"
    engine = funded()
    store = Store(str(data), fsync="off", snapshot_every=25)
    store.recover(engine)
    accounts = [open_account(engine, store, f"trader{i}", FUNDING) for i in range(4)]
    errors = []

    def trade(index):
        try:
            stream = [
                c
                for c in funded_commands(100 + index, 250, accounts=len(accounts))
                if c[0] not in ("submit", "d", "w") or c[1] == accounts[index]
            ]
            run_funded(engine, store, stream)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=trade, args=(i,)) for i in range(len(accounts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert store.stats()["snapshots"] >= 3  # ~390 records: about 6 taken (one is skipped while another runs)
    before = _everything(engine)
    store.abandon()
    again, store2, _ = _recover(data)
    assert _everything(again) == before
    store2.close(again)
    assert _full_replay(data, tmp_path) == before
    report = verify(str(data), out=lambda *a: None)
    assert report["ok"], report["problems"]


# -- SIGKILL ---------------------------------------------------------------------------------
PARENT_SCRIPT = r"""
import json, os, signal, sys
sys.path.insert(0, sys.argv[2])
from storage import Store
from tests.storage.funds_helpers import funded, funded_commands, funds_state, open_account, run_funded

engine = funded()
store = Store(sys.argv[1], snapshot_every=150, writer=sys.argv[3])
store.recover(engine)
out = open(sys.argv[4], "w")
def note(acked):
    n = store._last_n
    out.write(json.dumps({"n": n, "acked": acked, "state": funds_state(engine)}) + "\n")
for name in ("alice", "bob", "carol"):
    open_account(engine, store, name, {"USDT": 10**11, "BTC": 20000, "ETH": 2000, "SOL": 2000})
    note(True)
for cmd in funded_commands(int(sys.argv[5]), 400):  # acknowledged, one by one
    run_funded(engine, store, [cmd])
    note(True)
for cmd in funded_commands(int(sys.argv[5]) + 1, 60):  # journaled, never waited for
    run_funded(engine, store, [cmd], wait=False)
    note(False)
store.hand_off()  # the writer process has them (the inline writer never writes them)
out.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("seed", [11, 12])
def test_sigkill_restarts_to_the_balances_of_the_journaled_commands(tmp_path, each_writer, seed):
    data = str(tmp_path / "data")
    states = tmp_path / "states.jsonl"
    log = tmp_path / "parent.out"
    with open(log, "wb") as f:  # a file: the orphaned writer process may hold it open a moment
        parent = subprocess.run(
            [sys.executable, "-c", PARENT_SCRIPT, data, PROJECT_ROOT, each_writer, str(states), str(seed)],
            stdout=f,
            stderr=f,
            timeout=120,
        )
    assert parent.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    by_n = {}
    last_acked = 0
    for line in states.read_text().splitlines():
        row = json.loads(line)
        by_n[row["n"]] = row["state"]
        if row["acked"]:
            last_acked = row["n"]
    engine, store, summary = _recover(data)  # waits for an orphaned writer process still writing
    n = summary["last_record"]
    assert n >= last_acked > 300, (n, last_acked)  # nothing acknowledged is lost
    if each_writer == "inline":
        assert n == last_acked  # what was never waited for was never written
    recovered = json.loads(json.dumps(funds_state(engine)))
    assert recovered == by_n[n]  # exactly the live engine's balances after that record
    engine.check()
    store.close(engine)
    report = verify(data, out=lambda *a: None)
    assert report["ok"], report["problems"]
    assert all(f["ok"] for f in report["funds"].values())


# -- the service's startup ----------------------------------------------------------------------
@pytest.mark.server
def test_the_server_refuses_a_data_dir_with_balances_under_auth_off_cleanly(tmp_path):
    from tests.serverproc import ServerProcess

    data = tmp_path / "data"
    engine = funded()
    store = Store(str(data))
    store.recover(engine)
    open_account(engine, store, "alice", FUNDING)
    store.close(engine)
    refused = ServerProcess(str(data), "--auth", "off")
    with pytest.raises(RuntimeError, match="server exited with 2"):
        refused.start()
    output = refused.output()
    assert "cannot start:" in output and "holds balances (it was run with --auth on)" in output
    assert "start it with --auth on or use another --data-dir" in output
    assert "Traceback" not in output
    engine, store, _ = _recover(data)  # untouched
    assert engine.ledger.deposited["USDT"] == FUNDING["USDT"]
    store.abandon()
