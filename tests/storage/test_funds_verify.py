"""``make verify`` (``python -m storage.verify``) on a data dir with funds:
it replays with balances and proves conservation, prints the figures per
asset, and fails when the balances do not add up or the locks do not match
the open orders."""

from __future__ import annotations

import os

import pytest

import engine.funds as funds_module
from storage import Store
from storage.journal import list_segments
from storage.snapshot import encode_snapshot, list_snapshots, read_snapshot
from storage.verify import main, verify

from .funds_helpers import funded, funded_commands, move, open_account, run_funded
from .helpers import build

pytestmark = pytest.mark.usefixtures("each_writer")

USDT = 10**10
FUNDING = {"USDT": 10 * USDT, "BTC": 20_000, "ETH": 2_000, "SOL": 2_000}


def _funded_dir(data_dir, seed=21, count=400, snapshot_every=120) -> None:
    """Three funded accounts trading (fills, fees), deposits, withdrawals, cancels; closed cleanly."""
    engine = funded()
    store = Store(str(data_dir), snapshot_every=snapshot_every)
    store.recover(engine)
    for name in ("alice", "bob", "carol"):
        open_account(engine, store, name, FUNDING)
    run_funded(engine, store, funded_commands(seed, count))
    assert move(engine, store, "w", 1, "USDT", USDT) is not None
    assert engine.ledger.fees["USDT"] > 0 and engine.ledger.withdrawn["USDT"] > 0
    store.close(engine)


def _run(capsys, data_dir) -> tuple[int, str]:
    code = main(["--data-dir", str(data_dir)])
    return code, capsys.readouterr().out


def test_a_data_dir_with_deposits_trades_and_withdrawals_verifies(tmp_path, capsys):
    _funded_dir(tmp_path)
    code, out = _run(capsys, tmp_path)
    assert code == 0, out
    assert "result        OK" in out and "replay identical" in out
    assert "funds         per asset: available + locked + fees = deposits - withdrawals" in out
    report = verify(str(tmp_path), out=lambda *a: None)
    assert report["mode"] == "funds"
    usdt = report["funds"]["USDT"]
    assert usdt["ok"] and usdt["fees"] > 0 and usdt["withdrawals"] >= USDT
    assert usdt["available"] + usdt["locked"] + usdt["fees"] == usdt["deposits"] - usdt["withdrawals"]
    line = next(x for x in out.splitlines() if x.startswith("  USDT"))
    held = usdt["available"] + usdt["locked"] + usdt["fees"]
    assert f"= {held // USDT}.{held % USDT:010d};" in line and line.endswith("ok")


def test_a_data_dir_without_funds_says_so(tmp_path, capsys):
    engine, store = build(tmp_path, count=30)
    store.close(engine)
    code, out = _run(capsys, tmp_path)
    assert code == 0, out
    assert "funds         none: the data dir was run without balances (--auth off)" in out


def _forge(path: str, edit) -> None:
    """Rewrite a snapshot with ``edit(engine state)`` applied and a valid checksum."""
    snap = read_snapshot(path)
    edit(snap["engine"])
    with open(path, "wb") as f:
        f.write(encode_snapshot(snap["n"], snap["hash"], snap["symbols"], snap["engine"]))


def _prune_to(data_dir, keep: str) -> None:
    """Keep only the snapshot ``keep`` and the segments after it (pruned by the rule)."""
    n = read_snapshot(keep)["n"]
    for _n, path in list_snapshots(str(data_dir)):
        if path != keep:
            os.unlink(path)
    for first, path in list_segments(str(data_dir)):
        if first <= n:
            os.unlink(path)


def _credit(state: dict, account_id: int, asset: str, amount: int) -> None:
    """Add ``amount`` to the account's available ``asset`` in a snapshot's state."""
    for owner, rows in state["funds"]["balances"]:
        if owner == account_id:
            for row in rows:
                if row[0] == asset:
                    row[1] += amount
                    return
            rows.append([asset, amount, 0])
            return
    raise AssertionError("no such account")


def test_balances_that_do_not_add_up_fail_with_the_figures(tmp_path, capsys):
    # The journal before the snapshot was pruned (as DURABILITY.md allows), and
    # the snapshot credits alice 1 USDT that no deposit brought (written by a
    # faulty engine, or edited and re-checksummed): only conservation can tell.
    _funded_dir(tmp_path)
    snapshots = list_snapshots(str(tmp_path))
    keep = snapshots[0][1]
    _prune_to(tmp_path, keep)
    assert verify(str(tmp_path), out=lambda *a: None)["ok"]  # sound before the edit
    _forge(keep, lambda state: _credit(state, 1, "USDT", USDT))
    code, out = _run(capsys, tmp_path)
    assert code == 1
    assert "PROBLEM       USDT does not add up at the end of the journal" in out
    problem = next(x for x in out.splitlines() if "USDT does not add up at the end" in x)
    report = verify(str(tmp_path), out=lambda *a: None)
    usdt = report["funds"]["USDT"]
    held = usdt["available"] + usdt["locked"] + usdt["fees"]
    assert held - (usdt["deposits"] - usdt["withdrawals"]) == USDT
    assert f"= {held // USDT}.{held % USDT:010d}" in problem
    assert next(x for x in out.splitlines() if x.startswith("  USDT")).endswith("BROKEN")
    assert "result        FAILED" in out


def test_a_negative_balance_is_named(tmp_path, capsys):
    _funded_dir(tmp_path)
    keep = list_snapshots(str(tmp_path))[0][1]
    _prune_to(tmp_path, keep)

    def overdraw(state):  # BNB (nobody trades it) from carol to bob: the total adds up, carol is below 0
        _credit(state, 2, "BNB", 5)
        _credit(state, 3, "BNB", -5)

    _forge(keep, overdraw)
    code, out = _run(capsys, tmp_path)
    assert code == 1
    assert "BNB has negative balances at the end of the journal: account 3 available -0.005" in out
    assert "does not add up" not in out


def test_locks_that_do_not_match_the_open_orders_fail(tmp_path, capsys, monkeypatch):
    # a replaying engine that forgets to release the lock of a cancelled order:
    # every total still adds up, the account's locked is more than its orders hold
    _funded_dir(tmp_path)
    monkeypatch.setattr(funds_module.Ledger, "release", lambda self, funds, order: None)
    code, out = _run(capsys, tmp_path)
    assert code == 1
    assert "the replayed balances fail their checks: account" in out and "its open orders hold" in out


def test_a_ledger_that_loses_fees_fails_conservation(tmp_path, capsys, monkeypatch):
    # a replaying engine whose settlement takes the fees from the accounts but
    # never credits them to the exchange: units vanish, verify says where
    _funded_dir(tmp_path)
    real_init = funds_module.Ledger.__init__

    class Leaky(list):
        """A fee cell that drops every credit."""

        def __setitem__(self, index, value):
            pass

    def init(self, specs, accounts):
        real_init(self, specs, accounts)
        for asset in self._fees:
            self._fees[asset] = Leaky([0])
        for funds in self.symbols.values():
            funds.fee = self._fees[funds.quote]

    monkeypatch.setattr(funds_module.Ledger, "__init__", init)
    code, out = _run(capsys, tmp_path)
    assert code == 1
    assert "PROBLEM       USDT does not add up after record" in out  # at the first snapshot already
