"""Journal faults at the store's level (``storage.Store``): a wait bounded by
a timeout (the read barrier's), a journal file deleted, replaced or truncated
under a running store, a failed write or fsync and a writer killed after
writing (no record whose wait failed survives: it is cut from the file), and
a restart on a data dir whose journal is gone (refused unless
``allow_empty``). Server-level behaviour: ``tests/storage/test_fail_stop.py``.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from engine.order import BUY, LIMIT
from storage import DurabilityTimeout, JournalMissing, JournalWriteError
from storage.journal import JournalReader
from tests.serverproc import run_script_json

from .helpers import PROJECT_ROOT, fresh, segments

SHIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "writer_shim.py")


def _submit(engine, store, price: int, symbol: str = "BTC-USDT") -> int:
    with engine.lock(symbol):
        return store.log_submit(engine.submit(symbol, BUY, LIMIT, 1, price))


def _records(data_dir) -> int:
    reader = JournalReader(str(data_dir), repair_tail=False)
    return sum(1 for _ in reader.records())


def _failed(store, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not store.failed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.failed


@pytest.mark.parametrize("writer", ["process", "inline"])
def test_ticket_of_and_durable_follow_the_journal(tmp_path, writer):
    engine, store, _ = fresh(tmp_path, snapshot_every=0, writer=writer)
    assert store.ticket_of("BTC-USDT") == 0 and store.last_ticket() == 0
    # every symbol is a key before serving: last_ticket() iterates while log_* writes
    assert set(store._symbol_ticket) == set(engine.markets)
    t1 = _submit(engine, store, 100)
    t2 = _submit(engine, store, 100, "ETH-USDT")
    assert (store.ticket_of("BTC-USDT"), store.ticket_of("ETH-USDT"), store.last_ticket()) == (t1, t2, t2)
    assert not store.durable(t1)
    store.wait_symbol("BTC-USDT", 5.0)
    assert store.durable(t1)
    store.wait(t2)
    store.close(engine)


def test_a_bounded_wait_times_out_while_the_writer_is_stopped(tmp_path):
    engine, store, _ = fresh(tmp_path, snapshot_every=0, writer="process")
    ticket = _submit(engine, store, 100)
    os.kill(store._proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(DurabilityTimeout):
            store.wait_symbol("BTC-USDT", 0.2)
        assert 0.15 < time.monotonic() - started < 2
        assert not store.failed
    finally:
        os.kill(store._proc.pid, signal.SIGCONT)
    store.wait_symbol("BTC-USDT", 5.0)
    assert store.durable(ticket)
    store.close(engine)


GREEN_SCRIPT = r"""
import eventlet
eventlet.monkey_patch()
import json, os, signal, sys, time
sys.path.insert(0, sys.argv[2])
from engine.matcher import MatchingEngine
from engine.order import BUY, LIMIT
from storage import DurabilityTimeout, Store

engine = MatchingEngine()
store = Store(sys.argv[1], snapshot_every=0, writer="process")
store.recover(engine)
assert store._green is not None
out = {}
with engine.lock("BTC-USDT"):
    ticket = store.log_submit(engine.submit("BTC-USDT", BUY, LIMIT, 1, 100))
os.kill(store._proc.pid, signal.SIGSTOP)
others = eventlet.spawn(store.wait, ticket)  # an order's wait: no timeout
started = time.monotonic()
try:
    store.wait(ticket, 0.2)
    out["reader"] = "returned"
except DurabilityTimeout:
    out["reader"] = "timeout"
out["waited"] = time.monotonic() - started
out["parked_after_timeout"] = len(store._green.parked)
os.kill(store._proc.pid, signal.SIGCONT)
others.wait()
store.wait(ticket, 5.0)
out["parked_at_end"] = len(store._green.parked)
eventlet.sleep(0.3)  # a cancelled timer must not resume anything later
out["durable"] = store.durable(ticket)
store.close(engine)
print(json.dumps(out))
"""


def test_a_green_wait_with_a_timeout_leaves_the_parking_cleanly(tmp_path):
    result = run_script_json(GREEN_SCRIPT, str(tmp_path), PROJECT_ROOT)
    assert result["reader"] == "timeout" and 0.15 < result["waited"] < 2
    assert result["parked_after_timeout"] == 1  # the order's wait only
    assert result["parked_at_end"] == 0 and result["durable"]


@pytest.mark.parametrize("writer", ["process", "inline"])
@pytest.mark.parametrize("fault", ["deleted", "replaced", "truncated"])
def test_the_check_notices_a_journal_changed_under_the_store(tmp_path, writer, fault):
    engine, store, _ = fresh(tmp_path, snapshot_every=0, writer=writer)
    store.wait(_submit(engine, store, 100))
    assert store.check_journal()
    (path,) = segments(tmp_path)
    if fault == "deleted":
        os.unlink(path)
    elif fault == "replaced":
        os.rename(path, path + ".old")
        with open(path, "wb") as f:
            f.write(open(path + ".old", "rb").read())
    else:
        os.truncate(path, os.path.getsize(path) - 10)
    assert not store.check_journal()
    assert store.failed and fault in store.failure
    with pytest.raises(JournalWriteError):
        store.wait(_submit(engine, store, 101))
    store.close(engine)


@pytest.mark.parametrize("writer", ["process", "inline"])
def test_no_record_is_acknowledged_into_a_deleted_journal(tmp_path, writer):
    # The writers check their file before every acknowledgement: the periodic
    # check is not needed for this.
    engine, store, _ = fresh(tmp_path, snapshot_every=0, writer=writer)
    store.wait(_submit(engine, store, 100))
    os.unlink(segments(tmp_path)[0])
    with pytest.raises(JournalWriteError, match="deleted"):
        store.wait(_submit(engine, store, 101))
    store.close(engine)


def test_a_failed_fsync_cuts_the_records_it_failed_from_the_journal(tmp_path, monkeypatch):
    import storage.writer as writer_module

    # the startup sync and two acknowledged groups, then the fsync fails (EIO)
    monkeypatch.setattr(
        writer_module, "CHILD_COMMAND", [sys.executable, "-I", SHIM, "--fail-fsyncs-after", "3"]
    )
    engine, store, _ = fresh(tmp_path, snapshot_every=0, writer="process")
    store.wait(_submit(engine, store, 100))
    store.wait(_submit(engine, store, 101))
    size = os.path.getsize(segments(tmp_path)[0])
    with pytest.raises(JournalWriteError, match="Input/output error"):
        store.wait(_submit(engine, store, 102))
    assert os.path.getsize(segments(tmp_path)[0]) == size  # written, then cut
    store.close(engine)
    assert _records(tmp_path) == 2


def test_what_a_killed_writer_wrote_but_never_acknowledged_is_cut(tmp_path):
    engine, store, _ = fresh(tmp_path, snapshot_every=0, writer="process")
    store.wait(_submit(engine, store, 100))
    (path,) = segments(tmp_path)
    size = os.path.getsize(path)
    pid = store._proc.pid
    os.kill(pid, signal.SIGSTOP)
    ticket = _submit(engine, store, 101)
    store.hand_off()
    with open(path, "ab") as f:  # as if the child had written it and died before its ack
        f.write(b'[[2,"s","BTC-USDT","buy","limit",1,1,101,null,2,[],2],"00","11"]\n')
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(JournalWriteError, match="exited unexpectedly"):
        store.wait(ticket)
    _failed(store)
    assert os.path.getsize(path) == size
    store.close(engine)


def test_a_segment_the_killed_writer_rolled_to_without_an_ack_is_emptied(tmp_path):
    engine, store, _ = fresh(tmp_path, snapshot_every=0, writer="process")
    ticket = _submit(engine, store, 100)
    store.wait(ticket)
    pid = store._proc.pid
    os.kill(pid, signal.SIGSTOP)
    later = tmp_path / f"journal-v2-{ticket + 1:012d}.jsonl"  # as if rolled and written, no ack
    later.write_bytes(b'[[2,"s","BTC-USDT","buy","limit",1,1,101,null,2,[],2],"00","11"]\n')
    os.kill(pid, signal.SIGKILL)
    _failed(store)
    assert later.stat().st_size == 0
    store.close(engine)
    engine, store, summary = fresh(tmp_path, snapshot_every=0)
    assert summary["last_record"] == ticket
    store.close(engine)


def test_an_inline_write_that_fails_is_cut_and_fails_the_store(tmp_path, monkeypatch):
    engine, store, _ = fresh(tmp_path, snapshot_every=0, writer="inline")
    store.wait(_submit(engine, store, 100))
    (path,) = segments(tmp_path)
    size = os.path.getsize(path)
    real_sync = store._sync

    def failing_sync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "_sync", failing_sync)
    with pytest.raises(JournalWriteError, match="No space left"):
        store.wait(_submit(engine, store, 101))
    assert store.failed and "No space left on device" in store.failure
    assert os.path.getsize(path) == size
    monkeypatch.setattr(store, "_sync", real_sync)
    store.close(engine)
    assert _records(tmp_path) == 1


def test_a_used_data_dir_without_its_journal_refuses_to_start(tmp_path):
    engine, store, _ = fresh(tmp_path, snapshot_every=0)
    store.wait(_submit(engine, store, 100))
    store.close(engine)
    assert os.path.exists(tmp_path / "IDENTITY")
    for path in segments(tmp_path):
        os.unlink(path)
    for name in os.listdir(tmp_path):
        if name.startswith("snapshot-"):
            os.unlink(tmp_path / name)
    with pytest.raises(JournalMissing, match="allow-empty"):
        fresh(tmp_path)
    engine, store, summary = fresh(tmp_path, allow_empty=True)
    assert summary["last_record"] == 0 and not engine.orders
    store.close(engine)
    engine, store, _ = fresh(tmp_path)  # it has a journal again (empty)
    store.close(engine)


def test_a_fresh_or_legacy_data_dir_starts(tmp_path):
    engine, store, _ = fresh(tmp_path / "fresh")
    store.close(engine)
    assert os.path.exists(tmp_path / "fresh" / "IDENTITY")
    # a data dir from before IDENTITY, journal intact: adopted
    engine, store, _ = fresh(tmp_path / "legacy")
    store.wait(_submit(engine, store, 100))
    store.close(engine)
    os.unlink(tmp_path / "legacy" / "IDENTITY")
    engine, store, summary = fresh(tmp_path / "legacy")
    assert summary["last_record"] == 1 and os.path.exists(tmp_path / "legacy" / "IDENTITY")
    store.close(engine)
