"""Deposits and withdrawals in the journal (records ``d`` and ``w``) and the
data dir's mode (with funds or without, ``mode.json``)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from engine.matcher import MatchingEngine
from engine.order import BUY, LIMIT
from storage import ConfigMismatch, CorruptJournal, ReplayMismatch, Store
from storage.journal import DepositRecord, WithdrawRecord, _one_record, as_dict, decode
from storage.store import MODE_FILE

from .funds_helpers import funded, funds_state, move, open_account
from .helpers import build, fresh, lines_of, rewrite_chain, segments

pytestmark = pytest.mark.usefixtures("each_writer")

USDT = 10**10  # units of one USDT (scale 10)


def _funded_dir(data_dir, **store_kwargs) -> tuple[MatchingEngine, Store]:
    """Two accounts funded, an order, a deposit and a withdrawal."""
    engine = funded()
    store = Store(str(data_dir), **store_kwargs)
    store.recover(engine)
    alice = open_account(engine, store, "alice", {"USDT": 1000 * USDT, "BTC": 50_000})
    open_account(engine, store, "bob", {"USDT": 10 * USDT})
    move(engine, store, "d", alice, "ETH", 7)
    with engine.lock("BTC-USDT"):
        store.wait(store.log_submit(engine.submit("BTC-USDT", BUY, LIMIT, 10, 100, account_id=alice)))
    move(engine, store, "w", alice, "USDT", 5 * USDT)
    return engine, store


def _recover_funded(data_dir, **kwargs) -> tuple[MatchingEngine, Store, dict]:
    engine = funded()
    store = Store(str(data_dir), **kwargs)
    return engine, store, store.recover(engine)


def _records(data_dir) -> list[dict]:
    return [as_dict(json.loads(line)) for path in segments(data_dir) for line in lines_of(path)]


# -- the records ---------------------------------------------------------------------------
def test_deposit_and_withdraw_records_have_the_documented_fields(tmp_path):
    engine, store = _funded_dir(tmp_path)
    store.close(engine)
    records = _records(tmp_path)
    assert [r["op"] for r in records] == ["o", "k", "d", "d", "o", "k", "d", "d", "s", "w"]
    first = records[2]
    assert list(first) == ["n", "op", "account_id", "asset", "amount", "timestamp", "prev", "hash"]
    assert (first["account_id"], first["asset"], first["amount"]) == (1, "USDT", 1000 * USDT)
    assert (records[3]["asset"], records[3]["amount"]) == ("BTC", 50_000)
    withdraw = records[-1]
    assert (withdraw["op"], withdraw["account_id"], withdraw["asset"], withdraw["amount"]) == (
        "w",
        1,
        "USDT",
        5 * USDT,
    )
    # the bytes, exactly: [[n,"d",account_id,"asset",amount,timestamp],prev,hash]
    line = lines_of(segments(tmp_path)[0])[2]
    assert line.startswith(b'[[3,"d",1,"USDT",10000000000000,%d],"' % first["timestamp"])
    decoded = decode(line.rstrip(b"\n"))
    assert type(decoded) is DepositRecord and decoded.amount == 1000 * USDT
    decoded = decode(lines_of(segments(tmp_path)[0])[-1].rstrip(b"\n"))
    assert type(decoded) is WithdrawRecord and (decoded.account_id, decoded.asset) == (1, "USDT")


def test_a_restart_replays_deposits_and_withdrawals_exactly(tmp_path):
    engine, store = _funded_dir(tmp_path)
    before = funds_state(engine)
    store.abandon()  # no final snapshot: everything is replayed
    again, store2, summary = _recover_funded(tmp_path)
    assert summary["records_replayed"] == 10
    assert funds_state(again) == before
    alice = dict((a, (av, lk)) for a, av, lk in again.ledger.balances_of(1))
    assert alice["USDT"] == (995 * USDT - 10 * 100 * 1002, 10 * 100 * 1002)
    assert again.ledger.withdrawn["USDT"] == 5 * USDT and again.ledger.deposited["ETH"] == 7
    again.check()
    store2.abandon()


@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda c: c.__setitem__(4, c[4] * 1000), "InsufficientFunds"),  # withdraws more than there is
        (lambda c: c.__setitem__(2, 9), "AccountNotFound"),  # an account that was never opened
        (lambda c: c.__setitem__(3, "DOGE"), "unknown asset"),
        (lambda c: c.__setitem__(4, 0), "positive"),
    ],
)
def test_a_withdrawal_the_engine_refuses_on_replay_is_a_replay_mismatch(tmp_path, edit, reason):
    # Someone edits the last record (a withdrawal) and re-chains the journal:
    # the chain is valid, the engine refuses the command on replay.
    engine, store = _funded_dir(tmp_path)
    store.abandon()
    path = segments(tmp_path)[0]
    lines = lines_of(path)
    row = json.loads(lines[-1])
    assert row[0][1] == "w"
    edit(row[0])
    lines[-1] = json.dumps(row, separators=(",", ":")).encode() + b"\n"
    rewrite_chain(path, lines)
    with pytest.raises(ReplayMismatch, match=f"record {len(lines)}: replay failed: .*{reason}"):
        _recover_funded(tmp_path)


def test_a_torn_deposit_is_dropped_and_two_merged_records_are_damage(tmp_path):
    engine, store = _funded_dir(tmp_path)
    before = funds_state(engine)
    move(engine, store, "d", 2, "SOL", 3)
    store.abandon()
    path = segments(tmp_path)[0]
    lines = lines_of(path)
    assert b'"d"' in lines[-1]
    for cut in (5, len(lines[-1]) // 2, len(lines[-1]) - 1):  # a prefix of the last write
        work = tmp_path / f"cut{cut}"
        shutil.copytree(tmp_path, work, ignore=shutil.ignore_patterns("cut*"))
        with open(segments(work)[0], "wb") as f:
            f.write(b"".join(lines[:-1]) + lines[-1][:cut])
        engine2, store2, summary = _recover_funded(work)
        assert summary["torn_tail"]["record"] == len(lines)
        assert funds_state(engine2) == before
        store2.abandon()
    # a lost newline between a withdrawal and a deposit: two records in one line
    assert _one_record(lines[-2].rstrip(b"\n")) and _one_record(lines[-1].rstrip(b"\n"))
    assert not _one_record(lines[-2].rstrip(b"\n") + lines[-1][:-1])
    with open(path, "wb") as f:
        f.write(b"".join(lines[:-2]) + lines[-2].rstrip(b"\n") + lines[-1])
    with pytest.raises(CorruptJournal, match=f"record {len(lines) - 1}"):
        _recover_funded(tmp_path)


# -- the mode of a data dir ----------------------------------------------------------------
def _mode(data_dir) -> dict:
    with open(os.path.join(data_dir, MODE_FILE)) as f:
        return json.load(f)


def test_the_mode_is_recorded_at_the_first_start(tmp_path):
    engine, store = _funded_dir(tmp_path / "funds")
    store.close(engine)
    assert _mode(tmp_path / "funds") == {"funds": True}
    engine, store = build(tmp_path / "plain", count=10)
    store.close(engine)
    assert _mode(tmp_path / "plain") == {"funds": False}


def test_a_data_dir_with_balances_refuses_an_engine_without_funds(tmp_path):
    engine, store = _funded_dir(tmp_path, snapshot_every=0)
    store.abandon()  # journal only: the mode check, not the snapshot, refuses
    with pytest.raises(ConfigMismatch) as info:
        fresh(tmp_path)
    message = str(info.value)
    assert "holds balances (it was run with --auth on)" in message
    assert "start it with --auth on or use another --data-dir" in message
    assert str(tmp_path) in message
    # and the right engine still recovers it
    again, store2, _ = _recover_funded(tmp_path)
    store2.abandon()


def test_a_data_dir_without_balances_refuses_an_engine_with_funds(tmp_path):
    engine, store = build(tmp_path, count=20)
    store.close(engine)
    with pytest.raises(
        ConfigMismatch, match=r"was run without balances \(--auth off\); start it with --auth off"
    ):
        _recover_funded(tmp_path)
    assert _mode(tmp_path) == {"funds": False}  # unchanged


def test_a_data_dir_from_before_balances_is_without_funds(tmp_path):
    engine, store = build(tmp_path, count=20)
    store.close(engine)
    os.unlink(tmp_path / MODE_FILE)  # as written before this version
    with pytest.raises(ConfigMismatch, match="--auth off, before balances existed"):
        _recover_funded(tmp_path)
    assert not os.path.exists(tmp_path / MODE_FILE)
    engine, store, _ = fresh(tmp_path)  # without funds: fine, and the mode is recorded now
    store.abandon()
    assert _mode(tmp_path) == {"funds": False}


def test_a_data_dir_with_no_command_yet_takes_either_mode(tmp_path):
    engine, store, _ = fresh(tmp_path)  # first start without funds: an empty segment
    store.close(engine)  # nothing journaled: no snapshot either
    assert _mode(tmp_path) == {"funds": False}
    engine, store = _funded_dir(tmp_path)  # the first commands are with funds
    store.close(engine)
    assert _mode(tmp_path) == {"funds": True}
    with pytest.raises(ConfigMismatch):
        fresh(tmp_path)


def test_an_unreadable_mode_file_stops_startup(tmp_path):
    engine, store = build(tmp_path, count=5)
    store.close(engine)
    (tmp_path / MODE_FILE).write_text('{"funds": "yes"}\n')
    with pytest.raises(ConfigMismatch, match="mode.json: unreadable"):
        fresh(tmp_path)


def test_a_snapshot_with_balances_is_refused_by_an_engine_without_funds(tmp_path):
    # mode.json lost (the data dir then counts as one from before balances): the
    # snapshot's balances still stop an engine without funds, cleanly
    engine, store = _funded_dir(tmp_path)
    store.close(engine)  # a final snapshot with the balances
    os.unlink(tmp_path / MODE_FILE)
    with pytest.raises(ConfigMismatch, match=r"snapshot-0+10\.json was taken with balances.*--auth on"):
        fresh(tmp_path)


def test_the_engine_refuses_a_snapshot_of_the_other_mode():
    with_funds = funded()
    with_funds.accounts.create("alice", 1)
    with_funds.deposit(1, "USDT", 5)
    with pytest.raises(ValueError, match="holds balances"):
        MatchingEngine().restore(with_funds.snapshot())


def test_last_ticket_covers_deposits_and_account_records(tmp_path):
    # the read barrier of a state spanning accounts and balances (GET /account)
    # waits for last_ticket(): a deposit's record must be in it
    engine, store, _ = _recover_funded(tmp_path, fsync="off")
    with engine.all_locks():
        account = engine.accounts.create("alice", 1)
        opened = store.log_command("o", account.account_id, "alice", 1)
    assert store.last_ticket() == opened
    with engine.all_locks():
        engine.deposit(account.account_id, "USDT", USDT)
        store.log_command("d", account.account_id, "USDT", USDT, 1)
    with engine.lock("BTC-USDT"):
        order = engine.submit("BTC-USDT", BUY, LIMIT, 1, 100, account_id=account.account_id)
        submitted = store.log_submit(order)
    with engine.all_locks():
        engine.deposit(account.account_id, "USDT", 5)
        deposited = store.log_command("d", account.account_id, "USDT", 5, 2)
    assert store.ticket_of("BTC-USDT") == submitted < deposited == store.last_ticket()
    assert not store.durable(store.last_ticket())
    store.wait(store.last_ticket())
    assert store.durable(deposited)
    store.close(engine)
