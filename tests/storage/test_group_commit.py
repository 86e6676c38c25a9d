"""Group commit: correct and actually grouping under real threads and eventlet
green threads, with either writer (inline, or the writer process); fsync
policies; a failing disk."""

from __future__ import annotations

import errno
import json
import os
import random
import sys
import threading

import pytest

import storage.store as store_module
import storage.writer as writer_module
from engine.order import BUY, LIMIT, SELL
from storage import JournalWriteError
from storage.verify import canonical
from tests.serverproc import run_script_json

from .helpers import fresh, segments, state

PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYMBOLS = ("BTC-USDT", "ETH-USDT", "BNB-USDT", "SOL-USDT")
SHIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "writer_shim.py")


def _shim(monkeypatch, option: str, value) -> None:
    """Start the writer processes of this test through ``writer_shim.py``."""
    monkeypatch.setattr(writer_module, "CHILD_COMMAND", [sys.executable, "-I", SHIM, option, str(value)])


def _client(engine, store, seed, count, acks, errors, synced=lambda: 0):
    rng = random.Random(seed)
    try:
        for _ in range(count):
            symbol = rng.choice(SYMBOLS)
            with engine.lock(symbol):
                result = engine.submit(
                    symbol, rng.choice((BUY, SELL)), LIMIT, rng.randint(1, 5), rng.randint(98, 102)
                )
                ticket = store.log_submit(result)
            store.wait(ticket)
            acks.append((ticket, synced()))
    except Exception as exc:  # surfaced by the test
        errors.append(exc)


def _watch_fsyncs(monkeypatch, tmp_path, writer: str):
    """Record the journal's size at every fsync, in whichever process does
    them; return a function giving the largest so far: what is durable now."""
    if writer == "process":
        path = tmp_path / "fsynced"
        path.write_bytes(b"%20d" % 0)
        _shim(monkeypatch, "--record-fsyncs", path)
        return lambda: int(path.read_bytes())
    real = os.fsync
    synced = [0]

    def fsync(fd):
        real(fd)
        synced[0] = max(synced[0], os.fstat(fd).st_size)

    monkeypatch.setattr(store_module.os, "fsync", fsync)
    return lambda: synced[0]


@pytest.mark.parametrize("writer", ["inline", "process"])
def test_threads_every_ack_follows_the_fsync_that_covers_it(tmp_path, monkeypatch, writer):
    synced = _watch_fsyncs(monkeypatch, tmp_path, writer)
    engine, store, _ = fresh(tmp_path / "data", snapshot_every=0, writer=writer)
    acks: list = []
    errors: list = []
    threads = [
        threading.Thread(target=_client, args=(engine, store, seed, 150, acks, errors, synced))
        for seed in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    store._check()
    stats = store.statistics()
    assert stats["records"] == len(acks) == 8 * 150
    assert stats["fsyncs"] < stats["records"], "group commit grouped nothing"
    with open(segments(tmp_path / "data")[0], "rb") as f:
        ends = []
        offset = 0
        for line in f:
            offset += len(line)
            ends.append(offset)
    assert len(ends) == len(acks)
    for ticket, synced_size in acks:
        assert ends[ticket - 1] <= synced_size, f"record {ticket} acknowledged before it was fsynced"
    live = engine.snapshot()
    store.abandon()
    again, s, _ = fresh(tmp_path / "data")
    s.abandon()
    # Per symbol the journal order is the book order: books, trades and
    # sequences are exact; across symbols concurrent threads may interleave.
    assert canonical(again.snapshot()) == canonical(live)


@pytest.mark.parametrize("writer", ["inline", "process"])
@pytest.mark.parametrize("policy, fsyncs_per_record", [("always", 1), ("off", 0)])
def test_policies(tmp_path, policy, fsyncs_per_record, writer):
    engine, store, _ = fresh(tmp_path, fsync=policy, snapshot_every=0, writer=writer)
    for i in range(20):
        with engine.lock("BTC-USDT"):
            ticket = store.log_submit(engine.submit("BTC-USDT", BUY, LIMIT, 1, 100 + i))
        store.wait(ticket)
        assert os.path.getsize(segments(tmp_path)[0]) > 0  # written before the ack, whatever the policy
    stats = store.statistics()
    assert stats["fsyncs"] == 20 * fsyncs_per_record
    before = state(engine)
    store.abandon()
    again, s, _ = fresh(tmp_path)
    assert state(again) == before
    s.abandon()


@pytest.mark.parametrize("writer", ["inline", "process"])
def test_batch_waits_cover_concurrent_appends(tmp_path, writer):
    # K records logged, then one wait: one write and one fsync for all
    engine, store, _ = fresh(tmp_path, snapshot_every=0, writer=writer)
    tickets = []
    for i in range(50):
        with engine.lock("ETH-USDT"):
            tickets.append(store.log_submit(engine.submit("ETH-USDT", SELL, LIMIT, 1, 100 + i)))
    store.wait(tickets[-1])
    for t in tickets:
        store.wait(t)  # all covered: no further IO
    assert store.statistics()["fsyncs"] == 1 and store.statistics()["batches"] == 1
    store.close(engine)


@pytest.mark.parametrize("writer", ["inline", "process"])
def test_a_failing_disk_fails_every_wait_and_is_not_acknowledged(tmp_path, monkeypatch, writer):
    if writer == "process":
        _shim(monkeypatch, "--fail-writes-after", 1)  # the child's second write fails
    engine, store, _ = fresh(tmp_path, snapshot_every=0, writer=writer)
    with engine.lock("BTC-USDT"):
        store.wait(store.log_submit(engine.submit("BTC-USDT", BUY, LIMIT, 1, 100)))

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    if writer == "inline":
        monkeypatch.setattr(store_module.os, "write", full)
    with engine.lock("BTC-USDT"):
        ticket = store.log_submit(engine.submit("BTC-USDT", BUY, LIMIT, 1, 101))
    with pytest.raises(JournalWriteError, match="No space left"):
        store.wait(ticket)
    monkeypatch.undo()
    with engine.lock("BTC-USDT"):
        later = store.log_submit(engine.submit("BTC-USDT", BUY, LIMIT, 1, 102))
    with pytest.raises(JournalWriteError):  # the store stays failed
        store.wait(later)
    store.abandon()
    again, s, summary = fresh(tmp_path)
    assert summary["last_record"] == 1  # only the acknowledged record
    s.abandon()


EVENTLET_SCRIPT = r"""
import eventlet
eventlet.monkey_patch()
import json, random, sys, warnings
sys.path.insert(0, sys.argv[2])
from engine.matcher import MatchingEngine
from engine.order import BUY, SELL, LIMIT
from storage import Store
from storage.verify import state_json

data_dir = sys.argv[1]
engine = MatchingEngine()
store = Store(data_dir, yield_fn=lambda: eventlet.sleep(0), snapshot_every=0, writer=sys.argv[3])
store.recover(engine)
acked = []

def client(seed):
    rng = random.Random(seed)
    for _ in range(20):
        symbol = rng.choice(["BTC-USDT", "ETH-USDT"])
        with engine.lock(symbol):
            result = engine.submit(symbol, rng.choice([BUY, SELL]), LIMIT, rng.randint(1, 5), rng.randint(98, 102))
            ticket = store.log_submit(result)
        store.wait(ticket)
        assert store._durable_n >= ticket
        acked.append(ticket)
        eventlet.sleep(0)  # the request's response goes out

pool = eventlet.GreenPool()
for seed in range(50):
    pool.spawn(client, seed)
pool.waitall()
stats = store.statistics()
live = state_json(engine)
store.abandon()
again = MatchingEngine()
s = Store(data_dir)
s.recover(again)
print(json.dumps({"stats": stats, "acked": len(acked), "same": state_json(again) == live}))
"""


@pytest.mark.parametrize("writer", ["inline", "process"])
def test_eventlet_green_threads_group_and_recover_exactly(tmp_path, writer):
    result = run_script_json(EVENTLET_SCRIPT, str(tmp_path), PROJECT, writer)
    assert result["acked"] == result["stats"]["records"] == 1000
    # 50 green clients: each leader's yield lets the others join its batch
    assert result["stats"]["fsyncs"] <= 1000 / 5, result["stats"]
    assert result["same"]  # one OS thread: the journal order is the execution order


@pytest.mark.parametrize("writer", ["inline", "process"])
def test_rows_that_raced_are_written_in_ticket_order(tmp_path, writer):
    # log_* take no lock: a thread can take its ticket and be preempted before
    # appending its row while another symbol's thread takes the next ticket
    # and appends first. The leader writes only up to the gap, holds the rest,
    # and writes everything in ticket order once the gap is filled.
    from storage.journal import submit_row

    engine, store, _ = fresh(tmp_path, snapshot_every=0, writer=writer)
    with engine.lock("BTC-USDT"):
        a = engine.submit("BTC-USDT", BUY, LIMIT, 1, 100)
    with engine.lock("ETH-USDT"):
        b = engine.submit("ETH-USDT", SELL, LIMIT, 2, 101)
    with engine.lock("ETH-USDT"):
        c = engine.submit("ETH-USDT", SELL, LIMIT, 3, 102)
    ta, tb = next(store._tickets), next(store._tickets)  # A took ta, then B took tb ...
    store._pending.append(submit_row(tb, b))  # ... and appended first
    if writer == "inline":
        store._flush(False)  # a leader now: record ta is missing
    else:
        store.hand_off()  # what a waiter sends first: record ta is missing
    assert store._durable_n == 0 and len(store._held) == 1
    with engine.lock("ETH-USDT"):
        tc = store.log_submit(c)
    store._pending.append(submit_row(ta, a))  # A resumes
    store.wait(tc)
    store._check()
    assert (ta, tb, tc) == (1, 2, 3) and store._durable_n == 3 and not store._held
    with open(segments(tmp_path)[0], "rb") as f:
        commands = [json.loads(line)[0] for line in f]
    assert [(cmd[0], cmd[2], cmd[6]) for cmd in commands] == [
        (1, "BTC-USDT", 1),
        (2, "ETH-USDT", 2),
        (3, "ETH-USDT", 3),
    ]
    before = state(engine)
    store.abandon()
    again, s, _ = fresh(tmp_path)
    assert state(again) == before
    s.abandon()


@pytest.mark.parametrize("writer", ["inline", "process"])
def test_lock_free_appends_under_forced_preemption(tmp_path, monkeypatch, writer):
    # A tiny switch interval makes threads of different symbols preempt each
    # other between taking a ticket and appending its row: the journal must
    # still hold every record once, in ticket order, across snapshot rolls,
    # and replay to the same books.
    engine, store, _ = fresh(tmp_path, snapshot_every=97, writer=writer)
    gaps = []
    take = store._take

    def counting_take(first):  # the first record number the caller expects
        rows = take(first)
        gaps.append(bool(store._held))
        return rows

    monkeypatch.setattr(store, "_take", counting_take)
    acks: list = []
    errors: list = []
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [
            threading.Thread(target=_client, args=(engine, store, seed, 120, acks, errors))
            for seed in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors
    store._check()
    assert sorted(ticket for ticket, _ in acks) == list(range(1, 8 * 120 + 1))
    live = engine.snapshot()
    store.abandon()
    n = 0
    for path in segments(tmp_path):
        with open(path, "rb") as f:
            for line in f:
                n += 1
                assert json.loads(line)[0][0] == n
    assert n == 8 * 120
    print(f"{sum(gaps)} of {len(gaps)} flushes found a gap")
    again, s, _ = fresh(tmp_path)
    s.abandon()
    assert canonical(again.snapshot()) == canonical(live)
