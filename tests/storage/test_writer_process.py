"""The journal writer process (``storage.writer``): what happens when the
child dies under a live server, and when the server dies under a live child.

* The child dies: nothing further is acknowledged. A ``wait`` that was
  blocked and every later one raise ``JournalWriteError`` (as when an inline
  write fails), and it is logged ``CRITICAL``.
* The server dies: the child writes every whole frame it had received,
  fsyncs, releases the data dir's ``LOCK`` and exits; a restart meanwhile
  waits for it, a live holder is still refused at once.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from engine.order import BUY, LIMIT
from storage import DataDirLocked, JournalWriteError
from storage.verify import verify
from tests.serverproc import run_script_json

from .helpers import PROJECT_ROOT, build, fresh, lines_of, segments


def _submit(engine, store, price: int) -> int:
    with engine.lock("BTC-USDT"):
        return store.log_submit(engine.submit("BTC-USDT", BUY, LIMIT, 1, price))


def _exited(pid: int, timeout: float = 10.0) -> None:
    """Wait until ``pid`` (a child of this process or not) is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:  # not our child: poll for its existence
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not exit")


def test_batch_and_always_default_to_the_process_and_off_to_inline(tmp_path):
    for policy, default in (("batch", "process"), ("always", "process"), ("off", "inline")):
        engine, store, _ = fresh(tmp_path / policy, fsync=policy)
        assert store.statistics()["writer"] == default
        assert (store._proc is not None) == (default == "process")
        store.close(engine)
        for writer in ("inline", "process"):
            engine, store, _ = fresh(tmp_path / policy, fsync=policy, writer=writer)
            assert store.statistics()["writer"] == writer
            store.close(engine)
            if writer == "process":
                assert store._proc.process.returncode == 0


def test_the_child_dying_fails_the_store_and_nothing_further_is_acknowledged(tmp_path, caplog):
    engine, store, _ = fresh(tmp_path, snapshot_every=0, writer="process")
    store.wait(_submit(engine, store, 100))
    pid = store._proc.pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while store._error is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the ack reader sees the pipe close
    assert store._error is not None
    assert any(
        r.levelno == logging.CRITICAL and "exited unexpectedly" in r.getMessage() for r in caplog.records
    )
    ticket = _submit(engine, store, 101)
    with pytest.raises(JournalWriteError, match="exited unexpectedly"):
        store.wait(ticket)
    with pytest.raises(JournalWriteError):  # the store stays failed
        store.wait(_submit(engine, store, 102))
    assert store.statistics()["durable_record"] == 1
    store.abandon()
    again, s, summary = fresh(tmp_path)
    assert summary["last_record"] == 1  # only the acknowledged record
    s.close(again)


def test_a_wait_blocked_when_the_child_dies_raises(tmp_path):
    engine, store, _ = fresh(tmp_path, snapshot_every=0, writer="process")
    store.wait(_submit(engine, store, 100))
    pid = store._proc.pid
    os.kill(pid, signal.SIGSTOP)  # the child takes the frame into its pipe and never acks
    ticket = _submit(engine, store, 101)
    outcome: list = []

    def waiter() -> None:
        try:
            store.wait(ticket)
            outcome.append("acknowledged")
        except JournalWriteError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.2)
    assert not outcome and thread.is_alive()  # blocked: not durable
    os.kill(pid, signal.SIGKILL)
    thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], JournalWriteError), outcome
    store.abandon()


def test_an_error_in_the_child_is_reported_with_its_reason(tmp_path, monkeypatch):
    import storage.writer as writer_module

    shim = os.path.join(os.path.dirname(os.path.abspath(__file__)), "writer_shim.py")
    monkeypatch.setattr(
        writer_module, "CHILD_COMMAND", [sys.executable, "-I", shim, "--fail-writes-after", "0"]
    )
    engine, store, _ = fresh(tmp_path, snapshot_every=0, writer="process")
    with pytest.raises(JournalWriteError, match=r"writer process \(pid \d+\) failed: .*No space left"):
        store.wait(_submit(engine, store, 100))
    assert store._proc.process.wait(10) == 1
    store.abandon()


def test_a_child_that_cannot_start_fails_recovery_and_releases_the_data_dir(tmp_path, monkeypatch):
    import storage.writer as writer_module

    monkeypatch.setattr(writer_module, "CHILD_COMMAND", [sys.executable, "-c", "import sys; sys.exit(3)"])
    with pytest.raises(JournalWriteError, match=r"exited unexpectedly \(status 3\)"):
        fresh(tmp_path, writer="process")
    monkeypatch.undo()
    engine, store, summary = fresh(tmp_path, writer="process")  # LOCK was released
    store.wait(_submit(engine, store, 100))
    store.close(engine)


PARENT_SCRIPT = r"""
import os, signal, sys
sys.path.insert(0, sys.argv[2])
from engine.matcher import MatchingEngine
from engine.order import BUY, SELL, LIMIT
from storage import Store

engine = MatchingEngine()
store = Store(sys.argv[1], snapshot_every=0, writer="process")
store.recover(engine)
for i in range(5):  # acknowledged
    with engine.lock("BTC-USDT"):
        ticket = store.log_submit(engine.submit("BTC-USDT", BUY, LIMIT, 1, 100 + i))
    store.wait(ticket)
os.kill(store._proc.pid, signal.SIGSTOP)  # the child is slow: what follows stays in the pipe
for i in range(2000):
    with engine.lock("ETH-USDT"):
        store.log_submit(engine.submit("ETH-USDT", (BUY, SELL)[i % 2], LIMIT, 1 + i % 3, 95 + i % 11))
store.hand_off()
print(store._proc.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_server_killed_the_child_writes_what_it_received_and_a_restart_waits_for_it(tmp_path):
    data_dir = str(tmp_path / "data")
    out = tmp_path / "parent.out"
    with open(out, "wb") as f:  # a file: the stopped child keeps the parent's stderr open
        parent = subprocess.run(
            [sys.executable, "-c", PARENT_SCRIPT, data_dir, PROJECT_ROOT], stdout=f, stderr=f, timeout=60
        )
    assert parent.returncode == -signal.SIGKILL, out.read_text()
    child = int(out.read_text().split()[0])
    assert len(lines_of(segments(data_dir)[0])) == 5  # the rest is in the pipe
    recovered: list = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: recovered.append(fresh(data_dir)))
    try:
        thread.start()  # finds the LOCK held by the orphaned child, whose server is dead: waits
        time.sleep(0.3)
        assert not recovered
    finally:
        os.kill(child, signal.SIGCONT)
    thread.join(15)
    assert recovered and time.monotonic() - started >= 0.3
    _exited(child)
    engine, store, summary = recovered[0]
    assert summary["last_record"] == 5 + 2000 and summary["torn_tail"] is None
    store.close(engine)
    report = verify(data_dir, out=lambda *a: None)
    assert report["ok"], report["problems"]


def test_a_live_holder_of_the_lock_is_refused_at_once(tmp_path):
    engine, store = build(tmp_path, count=10, writer="process")
    started = time.monotonic()
    with pytest.raises(DataDirLocked, match=f"pid {os.getpid()}"):
        fresh(tmp_path)
    assert time.monotonic() - started < 1
    store.close(engine)


GREEN_SCRIPT = r"""
import warnings
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
import eventlet
eventlet.monkey_patch()
import json, os, signal, sys
sys.path.insert(0, sys.argv[2])
from engine.matcher import MatchingEngine
from engine.order import BUY, LIMIT
from storage import JournalWriteError, Store
from storage.journal import submit_row

data_dir = sys.argv[1]
engine = MatchingEngine()
store = Store(data_dir, yield_fn=lambda: eventlet.sleep(0), snapshot_every=0, writer="process")
store.recover(engine)
assert store._green is not None  # the green path is what this script tests
parked = store._green.parked
out = {}

def submit(price):
    with engine.lock("BTC-USDT"):
        return store.log_submit(engine.submit("BTC-USDT", BUY, LIMIT, 1, price))

def outcome(ticket):
    try:
        store.wait(ticket)
        return "acked"
    except JournalWriteError:
        return "failed"

# 1. Waiters killed or timed out while parked leave the list; the others are acked.
pid = store._proc.pid
os.kill(pid, signal.SIGSTOP)  # frames wait in the pipe, no ack comes
doomed = eventlet.spawn(outcome, submit(100))
others = [eventlet.spawn(outcome, submit(101 + i)) for i in range(5)]
eventlet.sleep(0.05)
out["parked_while_stopped"] = len(parked)
doomed.kill()
try:
    with eventlet.Timeout(0.05):
        store.wait(submit(110))
    out["timeout"] = "no"
except eventlet.Timeout:
    out["timeout"] = "raised"
out["parked_after_kill_and_timeout"] = len(parked)
os.kill(pid, signal.SIGCONT)
out["others"] = [g.wait() for g in others]
out["parked_after_acks"] = len(parked)

# 2. A gap (a ticket taken, its row not appended yet): the sender sends up to it
# and keeps trying, yielding, until the row arrives; nobody is left parked.
with engine.lock("BTC-USDT"):
    a = engine.submit("BTC-USDT", BUY, LIMIT, 1, 120)
    b = engine.submit("BTC-USDT", BUY, LIMIT, 1, 121)
ta, tb = next(store._tickets), next(store._tickets)
store._pending.append(submit_row(tb, b))
late = eventlet.spawn(outcome, tb)
eventlet.sleep(0.02)
out["gap_waiting"] = not late.dead
store._pending.append(submit_row(ta, a))
out["gap"] = [late.wait(), outcome(ta)]
out["durable"] = store._durable_n

# 3. The child dies under parked waiters: every one of them raises.
os.kill(store._proc.pid, signal.SIGSTOP)
blocked = [eventlet.spawn(outcome, submit(130 + i)) for i in range(5)]
eventlet.sleep(0.05)
os.kill(store._proc.pid, signal.SIGKILL)
with eventlet.Timeout(10):
    out["blocked"] = [g.wait() for g in blocked]
out["parked_at_end"] = len(parked)
ack_fd = store._proc._in
store.abandon()
from eventlet import hubs
hub = hubs.get_hub()
out["listening_after"] = ack_fd in hub.listeners[hub.READ]  # the reader's standing registration is gone
print(json.dumps(out))
"""


def test_green_waiters_park_and_leave_cleanly(tmp_path):
    # Under eventlet the process writer parks waiting requests itself
    # (Store._green_wait): a waiter that is killed or times out must leave the
    # list, a gap must not strand anyone, and a dying child must wake them all.
    result = run_script_json(GREEN_SCRIPT, str(tmp_path), PROJECT_ROOT)
    assert result["parked_while_stopped"] == 6
    assert result["timeout"] == "raised"
    assert result["parked_after_kill_and_timeout"] == 5
    assert result["others"] == ["acked"] * 5 and result["parked_after_acks"] == 0
    assert result["gap_waiting"] and result["gap"] == ["acked", "acked"]
    assert result["durable"] == 9  # 7 + the two of the gap
    assert result["blocked"] == ["failed"] * 5 and result["parked_at_end"] == 0
    assert result["listening_after"] is False


@pytest.mark.parametrize(
    "pattern",
    [
        ["all"],  # the usual case: one write takes the whole frame
        [5, "all"],  # a short first write
        ["block", 3, "block", 7, "all"],  # a full pipe (green: wait until writable), then short writes
    ],
)
def test_send_writes_the_whole_frame_through_short_writes_and_a_full_pipe(pattern):
    from storage.writer import DATA, FRAME, WriterProcess

    written, waits, steps = bytearray(), [], list(pattern)

    def write(fd, data):
        step = steps.pop(0) if steps else "all"
        if step == "block":
            raise BlockingIOError
        n = len(data) if step == "all" else min(step, len(data))
        written.extend(bytes(data[:n]))
        return n

    proc = object.__new__(WriterProcess)
    proc._out, proc._write = 99, write
    proc._trampoline = lambda fd, write: waits.append(fd)
    payload = bytes(range(40))
    proc.send(DATA, payload)
    assert bytes(written) == FRAME.pack(DATA, len(payload)) + payload
    assert waits == [99] * pattern.count("block")
