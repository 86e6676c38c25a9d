"""``Store``: the journal writer with group commit, snapshots and recovery.

How the service uses it (the order of calls is the contract)::

    store = Store(data_dir, fsync="batch", yield_fn=lambda: socketio.sleep(0))
    store.recover(engine)                       # once, before serving
    ...
    with engine.lock(symbol):                   # per request
        result = engine.submit(...)
        ticket = store.log_submit(result)       # in book order, no IO
    store.wait(ticket)                          # durable per policy -> now acknowledge
    store.maybe_snapshot(engine)
    ...
    store.close(engine)                         # clean shutdown

Group commit
    ``log_*`` takes the next record number (the *ticket*) from an atomic
    counter and appends the command's fields as a tuple to a list: no lock,
    no formatting, no hashing (every ``log_*`` runs under its symbol's lock,
    which orders a symbol's records; rows of different symbols that race are
    put back in ticket order by the sender). ``wait`` returns at once if the
    ticket is already durable. Otherwise, per ``writer``:

    ``process`` (the default for ``batch`` and ``always``; ``storage.writer``)
        the waiter takes the buffered rows that have no gap, encodes them with
        one ``msgspec`` call and writes the bytes to a pipe (one sender at a
        time, so frames are in ticket order), then sleeps on a condition
        (under eventlet: parks, see ``_green_wait``). A child process chains,
        writes and fsyncs them and acknowledges the last durable record; an
        ack reader (a green thread under eventlet, else an OS thread) wakes
        the waiters it covers. Records that arrive while the child fsyncs
        wait in the pipe and share its next fsync. The engine's
        process never waits for the disk, and under eventlet nothing goes
        through ``tpool``. If the child dies the store is failed.
    ``inline`` (the default for ``off``; ``writer="inline"`` for the others)
        the first waiter becomes the *leader*: it yields once (``yield_fn``)
        so that concurrent requests can append, takes the buffered rows,
        encodes and hash-chains them (``storage.journal.encode``), writes them
        with one ``write()`` and one ``fsync()`` (under eventlet in ``tpool``)
        and wakes the others, whose tickets are then covered. Only the leader
        does IO, so the file receives records in ticket order.

    Both work with real threads and with eventlet green threads
    (``threading`` is monkey-patched there) and write the same bytes.

fsync policies (what an acknowledgement promises)
    ``batch``   the record was written and fsynced before ``wait`` returned;
                many records share one fsync. Survives power loss.
    ``always``  the same promise, with one write and one fsync per record.
    ``off``     the record was written to the OS (``write()``) before ``wait``
                returned, never fsynced by the journal: survives a process
                crash (SIGKILL), not a power loss or kernel panic.

Snapshots
    Every ``snapshot_every`` records (and on ``close``) the engine is copied
    under all symbol locks -- so the copy is exactly "after record n" --,
    the journal is rolled over to a new segment starting at record ``n + 1``
    (the old one fsynced whatever the policy), and ``snapshot-<n>.json`` is
    written atomically. The newest ``KEEP_SNAPSHOTS`` are kept; segments are
    never deleted (see ``Documentation/DURABILITY.md`` for the pruning rule).

The read barrier (``Documentation/DURABILITY.md``, "What a client can see")
    ``log_*`` also notes the symbol's last ticket (``ticket_of``). A reader
    reads a state, then the ticket, and shows the state once ``durable``
    (an int compare) -- else ``wait_symbol``/``wait`` with a ``timeout``
    (``DurabilityTimeout``). So nothing is visible before it is durable.

The mode of a data dir
    With funds (``engine.ledger`` is not None: balances, ``--auth on``) or
    without: ``recover`` records it in ``mode.json`` at the first start and
    refuses the other mode (``ConfigMismatch``) unless nothing was journaled
    yet (``_check_mode``). Deposits and withdrawals are ``log_command``
    records (``d``, ``w``), journaled like account records.

Fail-stop
    A failed write or fsync, the writer process's death, or the segment
    deleted, replaced or truncated under the store (the writers ``fstat``
    it before every acknowledgement; ``check_journal``, called periodically
    by the service, ``stat``s its path) leaves the store ``failed`` (with a
    ``failure`` reason): every waiting and later ``wait`` raises
    ``JournalWriteError``, records written but never acknowledged are cut
    from the segment, and the process must restart. ``recover`` refuses a
    used data dir (``IDENTITY``) without a journal unless ``allow_empty``.

Errors: see ``storage.errors``.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import sys
import threading
import time
from decimal import Decimal

from storage.errors import (
    ConfigMismatch,
    CorruptJournal,
    CorruptSnapshot,
    DataDirLocked,
    DurabilityTimeout,
    JournalMissing,
    JournalWriteError,
    SnapshotWriteError,
    StoreError,
)
from storage.journal import (
    GENESIS,
    JournalReader,
    amend_row,
    apply_record,
    decode,
    encode_commands,
    expire_row,
    list_segments,
    segment_name,
    submit_extras,
)
from storage.journal import encode as encode_rows
from storage.snapshot import (
    atomic_write,
    fsync_dir,
    list_snapshots,
    read_snapshot,
    spec_dict,
    write_snapshot,
)
from storage.writer import DATA, ROLL, SYNC, WriterProcess

log = logging.getLogger(__name__)

POLICIES = ("batch", "always", "off")
WRITERS = ("process", "inline")
# The writer when none is given, per policy. The writer process wherever an
# fsync is paid: it halves the journal's CPU in the engine's process and
# takes the fsyncs off it (engine level, server-shaped driver under eventlet:
# median 79% of no journal over 15 sets against ~61% inline; it needs the
# second core: 57-64% when other jobs kept it busy). Inline for ``off``: no
# fsync to move, and a round trip per acknowledgement (Documentation/
# DURABILITY.md, "The writer process").
DEFAULT_WRITER = {"batch": "process", "always": "process", "off": "inline"}
KEEP_SNAPSHOTS = 3
SYMBOLS_FILE = "symbols.json"
# Written at a data dir's first start: a data dir that has it but no journal
# segment lost its journal (Store._check_not_emptied).
IDENTITY_FILE = "IDENTITY"
# The data dir's mode, recorded at its first start: with funds (balances:
# --auth on) or without (Store._check_mode).
MODE_FILE = "mode.json"
LOCK_FILE = "LOCK"
# How long recover() waits for a LOCK held by the writer process of a server
# that died (it is writing what it had received, fsyncing and exiting).
LOCK_WAIT_SECONDS = 10.0


class _Roll:
    """A pending segment roll: the records from ``first_n`` on go to a new
    segment. ``prev_hash`` is set by the leader that rolls: the hash of
    record ``first_n - 1`` (what the snapshot taken there records)."""

    __slots__ = ("first_n", "prev_hash")

    def __init__(self, first_n: int) -> None:
        self.first_n = first_n
        self.prev_hash: bytes | None = None


def _sleep0() -> None:
    time.sleep(0)


def _green_pool():
    """eventlet's pool of real OS threads when eventlet has monkey-patched
    threading, else None.

    Under eventlet a blocking ``fsync`` stops every green thread for its whole
    duration (0.1 to 10 ms here). Run in ``tpool``, it blocks only the commit
    leader: the other requests keep matching and queue for the next group, so
    the server stays CPU-bound instead of disk-latency-bound. With real threads
    ``os.fsync`` already releases the GIL.
    """
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is None or not patcher.is_monkey_patched("thread"):
        return None
    from eventlet import tpool

    return tpool


class _GreenParking:
    """Requests (eventlet green threads) waiting for the writer process's
    acks; see ``Store._green_wait``. Only for eventlet, where one OS thread
    runs them all and nothing here can be preempted."""

    __slots__ = ("parked", "sending", "sleep", "_hub", "_current")

    def __init__(self) -> None:
        from eventlet import greenthread, hubs

        self.parked: list = []  # [ticket, green thread]
        self.sending = False  # a request is about to send what is buffered
        self.sleep = greenthread.sleep
        self._hub = hubs.get_hub
        self._current = greenthread.getcurrent

    def park(self, ticket: int, timeout: float | None = None) -> None:
        """Switch to the hub until a ``wake_*`` covers ``ticket``, or
        ``timeout`` seconds have passed (or anything else resumes this green
        thread: callers re-check)."""
        entry = [ticket, self._current()]
        parked = self.parked
        parked.append(entry)
        hub = self._hub()
        timer = None
        if timeout is not None:
            # Resumes it unless a wake came first (a wake sets entry[1] to None
            # and schedules the switch itself: never two switches for one park).
            timer = hub.schedule_call_global(max(0.0, timeout), self._expire, entry)
        try:
            hub.switch()
        finally:
            if timer is not None:
                timer.cancel()
            if entry[1] is not None:  # not woken: killed
                parked.remove(entry)

    def _expire(self, entry: list) -> None:
        """The timer of a ``park`` with a timeout: resume the waiter if still parked."""
        thread = entry[1]
        if thread is not None:
            entry[1] = None
            self.parked.remove(entry)
            thread.switch()

    def wake_upto(self, n: int) -> None:
        """Resume the requests whose tickets are ``<= n``. O(parked)."""
        if self.parked:
            self._wake(lambda ticket: ticket <= n)

    def wake_unsent(self, sent_n: int) -> None:
        """Resume the requests whose tickets were not sent (a gap; they will
        send themselves). O(parked)."""
        if self.parked:
            self._wake(lambda ticket: ticket > sent_n)

    def wake_all(self) -> None:
        """Resume every parked request (the store failed)."""
        if self.parked:
            self._wake(lambda ticket: True)

    def _wake(self, chosen) -> None:
        """Schedule the parked requests whose tickets ``chosen`` accepts;
        keep the others."""
        schedule = self._hub().schedule_call_global
        keep = []
        for entry in self.parked:
            if chosen(entry[0]):
                schedule(0, entry[1].switch)
                entry[1] = None
            else:
                keep.append(entry)
        self.parked[:] = keep


class Store:
    """The durable journal and snapshots of one data dir (see the module docstring)."""

    def __init__(
        self,
        data_dir: str,
        *,
        fsync: str = "batch",
        snapshot_every: int = 250_000,
        yield_fn=None,
        writer: str | None = None,
        allow_empty: bool = False,
    ) -> None:
        if fsync not in POLICIES:
            raise ValueError(f"fsync must be one of {POLICIES}, not {fsync!r}")
        if writer is None:
            writer = DEFAULT_WRITER[fsync]
        if writer not in WRITERS:
            raise ValueError(f"writer must be one of {WRITERS}, not {writer!r}")
        self.writer = writer
        self.data_dir = os.path.abspath(data_dir)
        self.fsync = fsync
        self.snapshot_every = snapshot_every
        self.allow_empty = allow_empty
        self._yield = yield_fn or _sleep0
        self._tpool = _green_pool()
        # The process writer under eventlet parks waiting requests itself (see
        # _green_wait): (ticket, green thread) pairs, woken by the ack reader.
        self._green = None if self._tpool is None or writer != "process" else _GreenParking()
        self._mu = threading.Lock()
        self._cond = threading.Condition(self._mu)
        # Appends take no lock (see log_submit): tickets come from an atomic
        # counter and rows are appended to a list that is never replaced.
        self._tickets = itertools.count(1)
        # symbol -> its last ticket, written by log_* under the symbol's lock:
        # the read barrier's "which record does this state reflect".
        self._symbol_ticket: dict[str, int] = {}
        # the last ticket of a log_command (accounts, keys, deposits, withdrawals)
        self._command_ticket = 0
        self._pending: list = []  # command rows (ticket first); order by ticket may be off
        self._held: list = []  # the leader's: rows after a ticket not yet appended
        self._rolls: list = []  # pending _Roll markers, by first_n
        self._last_hash = GENESIS  # the hash of the last record written (owned by the leader)
        self._durable_n = 0  # every record <= this is durable per policy
        self._sent_n = 0  # every record <= this was handed to the writer (process) or written (inline)
        self._proc: WriterProcess | None = None
        self._send_mu = threading.Lock()  # one sender at a time: frames in record order
        self._sent_rolls: list = []  # rolls sent to the writer process, not yet acknowledged
        self._syncs_sent = 0
        self._syncs_done = 0
        self._cond_waiters = 0  # threads in a wait on _cond (the process writer's)
        self._startup_fsyncs = 0  # the writer process's fsyncs before serving
        self._flushing = False  # a leader is doing IO
        self._error: BaseException | None = None
        self._ready = False
        self._fd = -1
        self._segment: str | None = None
        # The segment being appended to, as (path, (st_dev, st_ino), its size
        # when this store opened or rolled to it, the bytes counter then): the
        # journal check compares the file with what was written to it.
        self._seg_state: tuple | None = None
        self._snap_n = 0  # the record the newest snapshot covers
        self._snapshot_due = snapshot_every  # the record number that makes the next one due
        self._snapshotting = False
        self._lock_fd = -1
        self._symbols: list[dict] = []
        self._engine = None  # from recover(): lets a leader take a due snapshot itself
        self._counters = {"records": 0, "batches": 0, "fsyncs": 0, "bytes": 0, "snapshots": 0}
        self.last_snapshot_seconds = 0.0

    # -- recovery ------------------------------------------------------------------------
    def recover(self, engine) -> dict:
        """Verify the data dir, load the newest valid snapshot, replay the
        journal after it into ``engine`` and open the journal for appending.

        Call once, before serving, with a freshly built engine. Creates the
        data dir when missing. Returns a summary: ``records_replayed``,
        ``last_record``, ``snapshot`` (path or None), ``snapshot_record``,
        ``skipped_snapshots``, ``torn_tail`` (dict or None), ``segments``,
        ``seconds``.

        Runtime complexity: O(journal bytes) for the chain check plus the
        replay of the records after the snapshot.

        Raises:
            DataDirLocked: another process has the data dir.
            ConfigMismatch: the symbols differ from the data dir's, or the
                engine's mode (with or without funds) from the data dir's.
            CorruptJournal: a damaged record other than a torn last one.
            CorruptSnapshot: no usable snapshot where one is needed.
            ReplayMismatch: a record did not replay to what was journaled.
        """
        if self._ready:
            raise StoreError("recover() was already called")
        started = time.perf_counter()
        os.makedirs(self.data_dir, exist_ok=True)
        self._lock_dir()
        try:
            summary = self._recover(engine)
        except BaseException:
            self._unlock_dir()
            raise
        summary["seconds"] = round(time.perf_counter() - started, 3)
        log.info(
            "storage: recovered %s: snapshot %s, %d records replayed, last record %d, torn tail %s, %.3fs",
            self.data_dir,
            summary["snapshot"],
            summary["records_replayed"],
            summary["last_record"],
            summary["torn_tail"],
            summary["seconds"],
        )
        return summary

    def _recover(self, engine) -> dict:
        for name in os.listdir(self.data_dir):
            if name.endswith(".tmp") and (
                name.startswith("snapshot-") or name[:-4] in (SYMBOLS_FILE, MODE_FILE)
            ):
                os.unlink(os.path.join(self.data_dir, name))
                log.warning("storage: removed an unfinished %s (a crash during a snapshot)", name)
        segments = list_segments(self.data_dir)
        self._check_not_emptied(bool(segments))
        self._symbols = self._check_symbols(engine)
        self._check_mode(engine, segments)

        first_n = segments[0][0] if segments else 1
        skipped = []
        candidates = list(reversed(list_snapshots(self.data_dir)))
        while True:
            snap = None
            while candidates:
                n, path = candidates.pop(0)
                try:
                    snap = read_snapshot(path)
                    snap["path"] = path
                    break
                except CorruptSnapshot as exc:
                    log.error("storage: skipping a damaged snapshot: %s", exc)
                    skipped.append({"path": path, "reason": str(exc)})
            if first_n > 1 and (snap is None or snap["n"] < first_n - 1):
                raise CorruptSnapshot(
                    f"{self.data_dir}: the journal starts at record {first_n} and no valid snapshot "
                    f"covers the records before it"
                )
            try:
                return self._replay(engine, snap, skipped)
            except _SnapshotOffChain as exc:
                log.error("storage: skipping snapshot %s: %s", snap["path"], exc)
                skipped.append({"path": snap["path"], "reason": str(exc)})

    def _replay(self, engine, snap: dict | None, skipped: list) -> dict:
        base = snap["n"] if snap else 0
        # With older segments pruned, the chain starts at the snapshot just
        # before them, or is checked at a later snapshot's record (_restore).
        reader = JournalReader(self.data_dir, repair_tail=True, watch=(base,))
        if snap is not None and base == reader.first_n - 1:
            reader.first_prev = snap["hash"]
        restored = False
        replayed = 0
        for _n, line in reader.records(after=base):
            if not restored:
                self._restore(engine, snap, reader)
                restored = True
            apply_record(engine, decode(line))
            replayed += 1
        if not restored:
            self._restore(engine, snap, reader)
        last_n, last_hash = reader.last_n, reader.last_hash
        if not reader.segments:
            last_n, last_hash = base, (snap["hash"] if snap else GENESIS)
            if snap:
                log.warning("storage: no journal segments; continuing after %s", snap["path"])
        self._tickets = itertools.count(last_n + 1)
        # every symbol a key from the start: last_ticket() may iterate the dict
        # while log_* writes it (threads), which must not add keys
        self._symbol_ticket = dict.fromkeys(engine.markets, 0)
        self._durable_n = last_n
        self._last_hash = last_hash
        self._snap_n = base
        self._snapshot_due = base + self.snapshot_every
        self._counters["records"] = 0
        if reader.segments:
            self._segment = reader.last_segment or reader.segments[-1][1]
        else:
            self._segment = os.path.join(self.data_dir, segment_name(last_n + 1))
        self._sent_n = last_n
        self._fd = os.open(self._segment, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if not reader.segments:
            fsync_dir(self.data_dir)
        st = os.fstat(self._fd)
        self._seg_state = (self._segment, (st.st_dev, st.st_ino), st.st_size, 0)
        self._write_identity()
        if self.writer == "process":
            os.close(self._fd)  # the child appends; this process never writes the journal
            self._fd = -1
            self._proc = WriterProcess(
                self.data_dir,
                self._segment,
                last_n + 1,
                last_hash,
                self.fsync,
                on_ack=self._on_ack,
                on_exit=self._on_exit,
                on_error=self._on_error,
                keep_fds=(self._lock_fd,),
                green=self._tpool is not None,
            )
            # Serve only once the child answers: a child that cannot start or
            # open the segment fails recover(), not the first request.
            try:
                self._send_and_wait(last_n, True)
            except JournalWriteError:
                self._stop_writer()
                raise
            self._startup_fsyncs = self._counters["fsyncs"]  # statistics() counts from here
            self._counters["fsyncs"] = 0
        self._engine = engine
        self._ready = True
        return {
            "data_dir": self.data_dir,
            "records_replayed": replayed,
            "last_record": last_n,
            "snapshot": snap["path"] if snap else None,
            "snapshot_record": base,
            "skipped_snapshots": skipped,
            "torn_tail": reader.torn.to_dict() if reader.torn else None,
            "segments": len(reader.segments),
            "journal_bytes": reader.bytes,
        }

    def _restore(self, engine, snap: dict | None, reader: JournalReader) -> None:
        """Check the snapshot against the chain, then load it into the engine."""
        if snap is None:
            return
        n = snap["n"]
        if reader.segments:
            if reader.last_n < n:
                raise CorruptJournal(
                    f"{snap['path']} covers records up to {n} but the journal ends at record "
                    f"{reader.last_n} (journal records are missing)",
                    reader.last_segment,
                    None,
                    reader.last_n + 1,
                )
            if n >= reader.first_n and reader.hashes.get(n) != snap["hash"]:
                raise _SnapshotOffChain(
                    f"its hash {snap['hash'].decode()} differs from the journal's hash of record {n}"
                )
        has_funds = snap["engine"].get("funds") is not None
        if has_funds != (engine.ledger is not None):  # mode.json said otherwise: edited by hand
            raise ConfigMismatch(
                f"{snap['path']} was taken {'with' if has_funds else 'without'} balances and the "
                f"engine runs {'without' if has_funds else 'with'} them: {_mode_advice(has_funds)}"
            )
        try:
            engine.restore(snap["engine"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptSnapshot(f"{snap['path']}: cannot be restored: {exc!r}") from exc

    def _check_not_emptied(self, has_segments: bool) -> None:
        """Refuse a data dir that was used before but holds no journal.

        A data dir is *used* once a store has recovered it (``IDENTITY``, or
        ``symbols.json`` for data dirs from before ``IDENTITY``); from then on
        it always holds a journal segment (created at that first start). No
        segment then means the journal was deleted: starting would serve an
        empty market and give ids and sequences out again. ``allow_empty``
        (``--allow-empty``) starts anyway (from the newest snapshot, if any).

        Raises:
            JournalMissing: used before, no segment, and not ``allow_empty``.
        """
        if has_segments:
            return
        marker = next(
            (
                name
                for name in (IDENTITY_FILE, SYMBOLS_FILE)
                if os.path.exists(os.path.join(self.data_dir, name))
            ),
            None,
        )
        if marker is None:
            return  # a fresh data dir
        if not self.allow_empty:
            raise JournalMissing(
                f"{self.data_dir} was used before ({marker} exists) but holds no journal segment "
                f"(journal-v2-*.jsonl): it was deleted or moved. Restore it; or, to start with an "
                f"empty market (ids and sequences start over), pass --allow-empty"
            )
        log.warning(
            "storage: %s was used before (%s exists) but holds no journal; starting without it (allow_empty)",
            self.data_dir,
            marker,
        )

    def _check_mode(self, engine, segments: list) -> None:
        """Refuse to recover a data dir in the other mode than the one it was
        used in, and record the mode at the first start.

        The mode is with funds (``engine.ledger`` is not None: balances,
        ``--auth on``) or without. ``mode.json`` records it at the first
        start; a data dir with journaled commands but no ``mode.json`` was
        written before balances existed: without. A data dir with no
        journaled command yet (empty segments, no snapshot) takes the
        engine's mode whatever was recorded. O(segments + snapshots).

        Raises:
            ConfigMismatch: the recorded mode is not the engine's and commands
            were journaled in it (they would not replay: an order of an
            account without balances, a deposit without a ledger).
        """
        funds = engine.ledger is not None
        recorded = read_mode(self.data_dir)
        used = bool(list_snapshots(self.data_dir)) or any(os.path.getsize(path) for _n, path in segments)
        if used:
            was = bool(recorded)  # no mode.json: written before balances existed, without
            if was != funds:
                if was:
                    why = f"{self.data_dir} holds balances (it was run with --auth on)"
                else:
                    before = ", before balances existed" if recorded is None else ""
                    why = f"{self.data_dir} was run without balances (--auth off{before})"
                raise ConfigMismatch(f"{why}; {_mode_advice(was)}")
        if recorded != funds:
            data = json.dumps({"funds": funds}).encode() + b"\n"
            atomic_write(os.path.join(self.data_dir, MODE_FILE), data)

    def _write_identity(self) -> None:
        """Mark the data dir as used (``IDENTITY``: an id and the creation time), once."""
        path = os.path.join(self.data_dir, IDENTITY_FILE)
        if os.path.exists(path):
            return
        identity = {"data_dir_id": os.urandom(16).hex(), "created_ns": time.time_ns()}
        atomic_write(path, json.dumps(identity).encode() + b"\n")

    def _check_symbols(self, engine) -> list[dict]:
        """Refuse to replay integers under a different tick, lot or fee table."""
        current = [spec_dict(m.spec) for m in engine.markets.values()]
        by_symbol = {d["symbol"]: d for d in current}
        path = os.path.join(self.data_dir, SYMBOLS_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)["symbols"]
        except FileNotFoundError:
            saved = None
        except (ValueError, KeyError) as exc:
            raise ConfigMismatch(f"{path}: unreadable: {exc}") from exc
        if saved is not None:
            for old in saved:
                new = by_symbol.get(old["symbol"])
                if new is None:
                    raise ConfigMismatch(
                        f"{path}: the data dir was written with symbol {old['symbol']}, which this "
                        f"engine does not have"
                    )
                for key in ("tick_size", "lot_size", "maker_fee", "taker_fee"):
                    if Decimal(old[key]) != Decimal(new[key]):
                        raise ConfigMismatch(
                            f"{path}: {old['symbol']} {key} was {old[key]} when the data dir was "
                            f"written and is {new[key]} now; the journal's integer prices, "
                            f"quantities and fees would change meaning"
                        )
            if len(saved) == len(current):
                return current
        atomic_write(path, json.dumps({"symbols": current}, indent=1).encode() + b"\n")
        return current

    def _lock_dir(self) -> None:
        """Take the data dir's ``LOCK`` (an exclusive ``flock``) and write our pid in it.

        The lock is held by the open file, which the writer process inherits:
        after a crash of the server that wrote the pid, its writer child still
        holds it while it writes what it had received, fsyncs and exits. Then
        (the pid in the file is no live process) wait for it, at most
        ``LOCK_WAIT_SECONDS``; a live holder is refused at once.

        Raises:
            DataDirLocked: another live process holds it, or the lock outlived the wait.
        """
        path = os.path.join(self.data_dir, LOCK_FILE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            holder = _lock_holder(fd)
            if holder is not None and _alive(holder):
                os.close(fd)
                raise DataDirLocked(
                    f"{self.data_dir} is in use by another process (pid {holder}, lock file {path})"
                ) from None
            if deadline is None:
                log.warning(
                    "storage: %s is still locked by the journal writer of a server that died (pid %s); "
                    "waiting up to %.0fs for it to finish",
                    self.data_dir,
                    holder,
                    LOCK_WAIT_SECONDS,
                )
                deadline = time.monotonic() + LOCK_WAIT_SECONDS
            elif time.monotonic() > deadline:
                os.close(fd)
                raise DataDirLocked(
                    f"{self.data_dir} is still locked {LOCK_WAIT_SECONDS:.0f}s after its server (pid "
                    f"{holder}) died: a process it started holds {path}"
                ) from None
            time.sleep(0.01)
        os.ftruncate(fd, 0)
        os.write(fd, b"%d\n" % os.getpid())
        self._lock_fd = fd

    def _unlock_dir(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = -1

    # -- the write path ----------------------------------------------------------------------
    @property
    def _last_n(self) -> int:
        """The last ticket handed out (exact when no ``log_*`` is running,
        e.g. under every symbol lock). O(1), not for hot paths."""
        return int(repr(self._tickets)[6:-1]) - 1  # "count(N)": N is the next ticket

    def log_submit(self, result) -> int:
        """Journal a submit's ``SubmitResult``; return its ticket (record number).

        Call while holding ``engine.lock(symbol)`` (every ``log_*`` call must
        hold the lock of its symbol): the journal's order of a symbol's records
        is then its book's order. Takes a ticket and appends the command's
        fields as a tuple (``storage.journal.submit_row``, inlined); the
        group-commit leader encodes and hashes them. No lock of its own: the
        ticket counter and ``list.append`` are atomic, and the leader puts
        rows of different symbols that raced back into ticket order. No IO.
        O(trades).
        """
        order = result.order
        trades = result.trades
        if result.triggered:  # stops it triggered traded too: replay needs their ids
            trades = result.all_trades()
        n = next(self._tickets)
        self._symbol_ticket[order.symbol] = n
        row = (
            n,
            "s",
            order.symbol,
            order.side,
            order.order_type,
            order.timestamp,
            order.quantity,
            order.price,
            order.client_order_id,
            order.order_id,
            [t.trade_id for t in trades] if trades else (),
            result.sequence,
        )
        extras = (
            order.stop_price is not None
            or order.display_quantity is not None
            or order.post_only
            or order.expire_time is not None
            or order.quote_quantity is not None
        )
        if order.account_id is not None:  # the owner and its stp: optional trailing fields 14, 15
            row += (submit_extras(order) if extras else None, order.account_id, order.stp)
        elif extras:
            row += (submit_extras(order),)  # the order types beyond the four: a 13th field
        self._pending.append(row)
        return n

    def log_cancel(self, result) -> int:
        """Journal a ``CancelResult`` (with its ``timestamp``, which replay
        passes to ``engine.cancel``); return its ticket. Same rules as
        ``log_submit``. O(1)."""
        order = result.order
        n = next(self._tickets)
        self._symbol_ticket[order.symbol] = n
        self._pending.append((n, "c", order.symbol, result.timestamp, order.order_id, result.sequence))
        return n

    def log_amend(self, result) -> int:
        """Journal an ``AmendResult``; return its ticket. Same rules as
        ``log_submit``. O(trades)."""
        n = next(self._tickets)
        self._symbol_ticket[result.order.symbol] = n
        self._pending.append(amend_row(n, result))
        return n

    def log_expire(self, result) -> int:
        """Journal the ``CancelResult`` of an ``expire``; return its ticket.
        Same rules as ``log_submit``. O(1)."""
        n = next(self._tickets)
        self._symbol_ticket[result.order.symbol] = n
        self._pending.append(expire_row(n, result))
        return n

    def log_command(self, *command) -> int:
        """Journal a command that is not about one symbol's book (an account
        opened, a key issued or revoked, a deposit or a withdrawal:
        ``storage.journal``'s ``o``, ``k``, ``r``, ``d``, ``w`` records, e.g.
        ``log_command("o", account_id, name, timestamp)``,
        ``log_command("d", account_id, asset, amount, timestamp)``); return its
        ticket. Call holding every symbol lock (``engine.all_locks()``),
        together with the change it records, so that a snapshot never falls
        between the two. ``last_ticket`` covers it (a read of balances or
        accounts waits for it). No IO. O(1)."""
        n = next(self._tickets)
        self._command_ticket = n
        self._pending.append((n, *command))
        return n

    # -- the read barrier and fail-stop --------------------------------------------------
    def ticket_of(self, symbol: str) -> int:
        """The ticket of the last record journaled for ``symbol`` (0: none
        since start). Read it *after* reading the state it should cover: a
        symbol's tickets only grow, so the state reflects no record beyond
        it. O(1)."""
        return self._symbol_ticket.get(symbol, 0)

    def last_ticket(self) -> int:
        """The last ticket journaled for any symbol or by ``log_command`` (the
        same rule): a state that spans symbols, accounts or balances reflects
        no record beyond it. O(symbols)."""
        tickets = self._symbol_ticket
        return max(self._command_ticket, max(tickets.values()) if tickets else 0)

    def durable(self, ticket: int) -> bool:
        """Whether record ``ticket`` is durable per the policy (an int
        compare: the read barrier's common case). Stays true after a failure
        for what was durable before it."""
        return ticket <= self._durable_n

    def wait_symbol(self, symbol: str, timeout: float) -> None:
        """The read barrier: return once every record journaled so far for
        ``symbol`` is durable, so that a state of it read just before may be
        shown. O(1) when it is (the common case); else as ``wait``.

        Raises:
            DurabilityTimeout: not durable within ``timeout`` seconds.
            JournalWriteError: the store failed before it was durable.
        """
        ticket = self._symbol_ticket.get(symbol, 0)
        if ticket > self._durable_n:
            self.wait(ticket, timeout)

    @property
    def serving(self) -> bool:
        """Recovered and not closed yet."""
        return self._ready

    @property
    def failed(self) -> bool:
        """The store failed: nothing is acknowledged any more (fail-stop)."""
        return self._error is not None

    @property
    def failure(self) -> str | None:
        """Why the store failed (file names relative to the data dir), or None."""
        error = self._error
        if error is None:
            return None
        return str(error).replace(self.data_dir + os.sep, "")

    def check_journal(self) -> bool:
        """Check that the segment being appended to is still the file this
        store writes, at least as long as what was written to it; fail the
        store otherwise (deleted, replaced or truncated under the server).
        The service calls it periodically; the writers also check their file
        before each acknowledgement. Returns False when the store is failed.
        One ``stat``.
        """
        if self._error is not None:
            return False
        if not self._ready or self._seg_state is None:
            return True
        written = self._counters["bytes"]  # before the state: see _segment_size
        path, ident, size0, bytes0 = self._seg_state
        expected = size0 + written - bytes0
        name = os.path.basename(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            reason = f"the journal segment {name} was deleted under the server"
        except OSError as exc:
            reason = f"the journal segment {name} cannot be checked: {exc}"
        else:
            if (st.st_dev, st.st_ino) != ident:
                reason = (
                    f"the journal segment {name} was replaced under the server (another file has its name)"
                )
            elif st.st_size < expected:
                reason = (
                    f"the journal segment {name} was truncated under the server "
                    f"({st.st_size} bytes, {expected} were written)"
                )
            else:
                return True
        self._fail(reason)
        return False

    def _segment_size(self) -> tuple[tuple, int]:
        """The segment state and the bytes written to that segment so far.
        Reads the byte counter before the state: a roll in between makes the
        size too small (a check then passes), never too large."""
        written = self._counters["bytes"]
        state = self._seg_state
        return state, state[2] + written - state[3]

    def _cut_unacknowledged(self) -> None:
        """After the writer process died: cut what it wrote past the last
        record it acknowledged (durable), so that a command whose wait failed
        (answered 503) leaves no trace after a restart. Only in the same file
        (not one that replaced it), only ever shorter."""
        state, size = self._segment_size()
        path, ident = state[0], state[1]
        try:
            for first_n, later in list_segments(self.data_dir):
                if first_n > self._durable_n and later != path and os.path.getsize(later):
                    # rolled to by the child, the roll never acknowledged: nothing in it was
                    os.truncate(later, 0)
                    log.warning("storage: emptied %s: none of its records was acknowledged", later)
        except (OSError, StoreError) as exc:
            log.error("storage: cannot check the segments after %s: %s", path, exc)
        try:
            fd = os.open(path, os.O_WRONLY)
        except OSError:
            return  # deleted: nothing to cut
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != ident or st.st_size <= size:
                return
            os.ftruncate(fd, size)
            os.fsync(fd)
            log.warning(
                "storage: cut %d bytes that the journal writer wrote to %s after its last acknowledged "
                "record %d (their commands were answered 503)",
                st.st_size - size,
                path,
                self._durable_n,
            )
        except OSError as exc:
            log.error("storage: cannot cut the unacknowledged tail of %s: %s", path, exc)
        finally:
            os.close(fd)

    def wait(self, ticket: int, timeout: float | None = None) -> None:
        """Return once record ``ticket`` is durable per the fsync policy.

        Call after releasing the symbol lock. The first waiter leads a group
        commit for everything buffered (see the module docstring).
        ``timeout`` (seconds; None: no limit, the order path) bounds the
        wait of a reader (the read barrier); an inline leader finishes its
        write and fsync first.

        Runtime complexity: O(1) when already durable; else one write (and
        one fsync) for the batch.

        Raises:
            JournalWriteError: the journal cannot be written; nothing is durable
            any more and the process must restart.
            DurabilityTimeout: ``timeout`` ran out first.
        """
        if ticket <= self._durable_n:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._proc is None:
            self._lead(ticket, False, deadline)
        elif self._green is not None:
            self._green_wait(ticket, deadline)
        else:
            self._send_and_wait(ticket, False, deadline)
        if self._durable_n >= self._snapshot_due and self._engine is not None:
            # Callers should call maybe_snapshot(); if one never does, the
            # journal must still not grow without bound between snapshots.
            self.maybe_snapshot(self._engine)

    def hand_off(self) -> None:
        """Hand every buffered record to the writer process now, without
        waiting for it to be durable (the process writer; with the inline
        writer, which writes only when waited for, a no-op).

        What ``wait`` does before it blocks; a caller with many commands in
        flight (a bulk request, a benchmark modelling the server) can hand a
        group off, match the next one and ``wait`` later. O(records).

        Raises:
            JournalWriteError: the journal is failed.
        """
        if self._proc is None:
            return
        self._raise_if_failed()
        with self._send_mu:
            self._send()

    def _lead(self, ticket: int, force: bool, deadline: float | None = None) -> None:
        """Wait for ``ticket`` or become the leader and flush. ``force``:
        flush and fsync whatever is buffered even if the ticket is covered."""
        cond = self._cond
        with cond:
            while True:
                self._raise_if_failed()
                if not force and ticket <= self._durable_n:
                    return
                if not self._flushing:
                    self._flushing = True
                    break
                cond.wait(_remaining(deadline, ticket))
        try:
            if not force and self.fsync == "batch":
                self._yield()  # let concurrent requests join this batch
            self._flush(force)
        finally:
            with cond:
                self._flushing = False
                cond.notify_all()

    def _commit(self, ticket: int) -> None:
        """Write and fsync everything up to ``ticket`` and anything buffered,
        whatever the policy (snapshots, ``close``)."""
        if self._proc is None:
            self._lead(ticket, True)
        else:
            self._send_and_wait(ticket, True)

    # -- the writer process (writer="process") ---------------------------------------------
    def _send_and_wait(self, ticket: int, sync: bool, deadline: float | None = None) -> None:
        """Hand every buffered row up to ``ticket`` to the writer process
        (unless a concurrent ``wait`` did), then wait for its ack. ``sync``:
        also make it fsync, and wait for that.

        Sending is the only work here: ``_take``, one ``msgspec`` call and a
        pipe ``write()`` per group; the caller then sleeps on the condition
        while the child chains, writes and fsyncs, and others keep matching.
        Before sending it yields once, as the inline leader does, so that the
        requests in flight journal theirs first: one frame, one wake-up of
        the child and one fsync for all of them."""
        cond = self._cond
        forced = sync
        if not sync and ticket > self._sent_n:
            self._yield()
        while sync or ticket > self._sent_n:
            self._raise_if_failed()
            with self._send_mu:
                if ticket > self._sent_n or sync:
                    self._send()
                    if sync and ticket <= self._sent_n:
                        self._syncs_sent += 1
                        target = self._syncs_sent
                        self._proc_send(SYNC)
                        with cond:
                            self._cond_waiters += 1
                            try:
                                while self._syncs_done < target and self._error is None:
                                    cond.wait()
                            finally:
                                self._cond_waiters -= 1
                        sync = False
            if ticket > self._sent_n:
                self._yield()  # a gap: let the thread holding an earlier ticket append
        with cond:
            self._cond_waiters += 1
            try:
                while ticket > self._durable_n:
                    self._raise_if_failed()
                    cond.wait(_remaining(deadline, ticket))
            finally:
                self._cond_waiters -= 1
        if forced or ticket > self._durable_n:
            self._raise_if_failed()  # a forced sync must have happened; a durable record stays acknowledged

    def _green_wait(self, ticket: int, deadline: float | None = None) -> None:
        """``wait`` for the process writer under eventlet, where every request
        is a green thread of one OS thread and none is preempted.

        The first request to find its record unsent is the sender: it yields
        once, so that the requests already runnable append their records,
        then hands everything buffered to the child in one frame. The others
        (and the sender, afterwards) park: they add themselves to a list and
        switch to the hub, and the ack reader schedules exactly the ones its
        ack covers. Per request that is one switch out and one back, against
        a condition's lock allocation and green-lock traffic, and one yield
        per group instead of one per request: the journal's CPU per record
        in this process 19.8 -> 9.0 us (``tests/bench_journal_wait.py``).
        Records cannot have gaps here (a ticket and its row's append never
        yield in between), but if one ever did, the sender wakes whoever is
        still unsent.
        """
        green = self._green
        while True:
            if ticket <= self._durable_n:
                return
            self._raise_if_failed()
            if ticket > self._sent_n and not green.sending:
                green.sending = True
                try:
                    green.sleep(0)
                    with self._send_mu:
                        self._send()
                finally:
                    green.sending = False
                green.wake_unsent(self._sent_n)
                continue
            green.park(ticket, _remaining(deadline, ticket))

    def _send(self) -> None:
        """(Holding ``_send_mu``.) Encode the buffered rows that have no gap
        and send them, with a roll frame where a snapshot cuts them."""
        rows = self._take(self._sent_n + 1)
        if not self._rolls:
            if rows:
                self._proc_send(DATA, encode_commands(rows))
                self._sent_n += len(rows)
            return
        for run, roll in self._cut_at_rolls(rows, self._sent_n):
            if run:
                self._proc_send(DATA, encode_commands(run))
            if roll is not None:
                self._sent_rolls.append(roll)
                self._proc_send(ROLL, roll.first_n.to_bytes(8, "little"))
        self._sent_n += len(rows)

    def _cut_at_rolls(self, rows: list, n: int):
        """Split ``rows`` (records ``n + 1`` on) where pending snapshots roll
        the journal: yields ``(run, roll)``, the records before each roll and
        the roll (taken off ``_rolls``), then ``(the rest, None)``."""
        upto = n + len(rows)
        start = 0
        while self._rolls and self._rolls[0].first_n - 1 <= upto:
            roll = self._rolls.pop(0)
            cut = roll.first_n - 1 - n
            yield rows[start:cut], roll
            start = cut
        yield rows[start:], None

    def _proc_send(self, kind: bytes, payload: bytes = b"") -> None:
        try:
            self._proc.send(kind, payload)
        except OSError as exc:
            self._fail(f"sending to the journal writer process (pid {self._writer_pid()}) failed: {exc}")
            raise JournalWriteError(f"the journal is failed: {self._error}") from exc

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise JournalWriteError(f"the journal is failed: {self._error}") from self._error

    def _fail(self, reason: str) -> None:
        with self._cond:
            if self._error is None:
                self._error = JournalWriteError(reason)
                log.critical("storage: %s; the store is failed, nothing further is acknowledged", reason)
            self._cond.notify_all()
        if self._green is not None:
            self._green.wake_all()

    def _on_ack(self, kind: bytes, n: int, fsyncs: int, written: int, last_hash: bytes) -> None:
        """The reader thread: records up to ``n`` are durable per policy."""
        green = self._green
        if green is None or self._cond_waiters:
            with self._cond:
                self._acknowledged(kind, n, fsyncs, written, last_hash)
                self._cond.notify_all()
        else:
            # eventlet, and nobody on the condition (requests park): the reader
            # is a green thread nothing preempts, so no lock to take.
            self._acknowledged(kind, n, fsyncs, written, last_hash)
        if green is not None:
            green.wake_upto(n)

    def _acknowledged(self, kind: bytes, n: int, fsyncs: int, written: int, last_hash: bytes) -> None:
        counters = self._counters
        counters["batches"] += kind == b"A"
        counters["records"] += n - self._durable_n
        counters["fsyncs"] = fsyncs - self._startup_fsyncs
        counters["bytes"] = written
        if kind == ROLL:
            roll = self._sent_rolls.pop(0)
            assert roll.first_n == n + 1, (roll.first_n, n)
            roll.prev_hash = last_hash
            path = os.path.join(self.data_dir, segment_name(n + 1))
            self._segment = path
            try:
                st = os.stat(path)
                ident = (st.st_dev, st.st_ino)
            except OSError:
                ident = None  # gone already: the next check fails the store
            self._seg_state = (path, ident, 0, written)  # a new segment starts empty
        elif kind == SYNC:
            self._syncs_done += 1
        self._durable_n = n
        self._last_hash = last_hash

    def _on_error(self, message: str) -> None:
        """The reader: the writer process reports a failure (then exits)."""
        self._fail(f"the journal writer process (pid {self._writer_pid()}) failed: {message}")

    def _on_exit(self, status: int) -> None:
        """The reader, when the writer process's pipe closed: after ``close``,
        or the child died (killed, or after reporting an error)."""
        if self._proc is not None and self._proc.closed:
            return
        # The child is gone (its exit status is in): cut what it wrote past its
        # last ack before the waiters learn that their commands failed.
        self._cut_unacknowledged()
        self._fail(
            f"the journal writer process (pid {self._writer_pid()}) exited unexpectedly (status {status})"
        )

    def _writer_pid(self):
        # The reader can report before WriterProcess() has returned (a child
        # that dies at once): then self._proc is not set yet.
        return self._proc.pid if self._proc is not None else "?"

    def _take(self, first: int) -> list:
        """The pending rows from ``first`` on that have no gap, in
        ticket order; rows after a gap are held for a later flush. A gap is a
        ticket taken by a thread that has not appended its row yet (another
        symbol's ``log_*`` preempted between the two steps). O(rows)."""
        pending = self._pending
        k = len(pending)
        rows = pending[:k]
        del pending[:k]  # appends after the copy stay in ``pending``
        if self._held:
            rows = self._held + rows
            self._held = []
        if not rows:
            return rows
        # Sorted already but for rows of different symbols that raced (then
        # sort() fixes them; on sorted input it is one C comparison per row).
        # Tickets are unique: sorted rows are contiguous iff the ends agree.
        rows.sort()
        if rows[0][0] == first and rows[-1][0] == first + len(rows) - 1:
            return rows
        for end, row in enumerate(rows):
            if row[0] != first + end:
                self._held = rows[end:]
                return rows[:end]
        return rows

    def _flush(self, force: bool) -> None:
        """The leader's work: encode and hash the pending rows, write them
        (rolling segments where snapshots were taken), fsync per policy, then
        advance ``_durable_n``."""
        rows = self._take(self._durable_n + 1)
        if self._held:
            self._yield()  # let the thread that holds the gap's ticket append
        state, start_size = self._segment_size()
        try:
            policy = self.fsync
            counters = self._counters
            upto = self._durable_n + len(rows)
            prev = self._last_hash
            for run, roll in self._cut_at_rolls(rows, self._durable_n):
                prev = self._write_run(run, prev, policy)
                if roll is not None:
                    roll.prev_hash = prev
                    self._roll(roll.first_n)
            if (policy == "batch" and rows) or force:
                self._sync(self._fd)
                counters["fsyncs"] += 1
            if rows:
                self._check_fd()
            counters["batches"] += 1
            counters["records"] += len(rows)
        except Exception as exc:
            self._error = JournalWriteError(f"writing the journal {self._segment} failed: {exc}")
            log.critical(
                "storage: writing the journal %s failed: %s; the store is failed", self._segment, exc
            )
            if self._seg_state is state:
                self._cut_fd(start_size)
            raise JournalWriteError(f"{self._segment}: write failed: {exc}") from exc
        self._last_hash = prev
        self._durable_n = self._sent_n = upto

    def _write_run(self, rows: list, prev: bytes, policy: str) -> bytes:
        """Encode ``rows`` after ``prev`` and write them: one ``write()``, or
        under ``always`` one write and fsync per record. Returns the last hash."""
        if not rows:
            return prev
        if policy == "always":
            for row in rows:
                data, prev = encode_rows([row], prev)
                self._write(data)
                self._sync(self._fd)
                self._counters["fsyncs"] += 1
            return prev
        data, prev = encode_rows(rows, prev)
        self._write(data)
        return prev

    def _sync(self, fd: int) -> None:
        if self._tpool is None:
            os.fsync(fd)
        else:
            self._tpool.execute(os.fsync, fd)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        fd = self._fd
        while view:
            view = view[os.write(fd, view) :]
        self._counters["bytes"] += len(data)  # after: check_journal never expects more than the file has

    def _check_fd(self) -> None:
        """(The inline leader, before advancing the durable record.) The
        segment is still linked and exactly as long as what was written to
        it: a journal deleted, replaced or truncated under the server fails
        the store before anything more is acknowledged. One ``fstat``."""
        st = os.fstat(self._fd)
        if st.st_nlink == 0:
            raise OSError("the journal segment was deleted or replaced under the server")
        _state, size = self._segment_size()
        if st.st_size != size:
            raise OSError(
                f"the journal segment is {st.st_size} bytes, {size} were written: truncated or "
                f"written by another process"
            )

    def _cut_fd(self, size: int) -> None:
        """After a failed inline write: cut the segment back to ``size`` (what
        it held before the failed group), only ever shorter."""
        try:
            st = os.fstat(self._fd)
            if st.st_nlink and st.st_size > size:
                os.ftruncate(self._fd, size)
                os.fsync(self._fd)
        except OSError as exc:
            log.error("storage: cannot cut the failed group from %s: %s", self._segment, exc)

    def _roll(self, first_n: int) -> None:
        """Close the current segment durably and start ``journal-<first_n>``."""
        self._sync(self._fd)
        self._counters["fsyncs"] += 1
        os.close(self._fd)
        self._fd = -1
        path = os.path.join(self.data_dir, segment_name(first_n))
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._segment = path
        st = os.fstat(self._fd)
        self._seg_state = (path, (st.st_dev, st.st_ino), st.st_size, self._counters["bytes"])
        fsync_dir(self.data_dir)

    # -- snapshots ---------------------------------------------------------------------------
    def maybe_snapshot(self, engine) -> None:
        """Write a snapshot when ``snapshot_every`` records have been journaled
        since the last one. O(1) when not due; O(state) when it writes (the
        engine is locked only while it is copied)."""
        if self.snapshot_every <= 0 or self._durable_n < self._snapshot_due or self._snapshotting:
            return
        try:
            self.snapshot(engine)
        except StoreError as exc:
            # The records are durable in the journal; a missing snapshot only
            # makes the next restart slower. Retry after another interval.
            self._snapshot_due = self._durable_n + self.snapshot_every
            log.error("storage: snapshot failed (retrying in %d records): %s", self.snapshot_every, exc)

    def snapshot(self, engine) -> str | None:
        """Snapshot now (if anything was journaled since the last one) and
        roll the journal; return the snapshot's path or None.

        Raises:
            JournalWriteError: the journal could not be written.
            SnapshotWriteError: the snapshot file could not be written.
        """
        with self._mu:
            if self._snapshotting or not self._ready:
                return None
            self._snapshotting = True
        try:
            started = time.perf_counter()
            locks = [market.lock for market in engine.markets.values()]
            for lock in locks:  # the same order as engine.snapshot(): no deadlock
                lock.acquire()
            try:
                n = self._last_n  # exact: no log_* runs while every symbol lock is held
                if n == self._snap_n:
                    return None
                state = engine.snapshot()
                roll = _Roll(n + 1)
                with self._mu:
                    self._rolls.append(roll)
            finally:
                for lock in reversed(locks):
                    lock.release()
            self._commit(n)  # writes records <= n, fsyncs and closes their segment
            last_hash = roll.prev_hash
            assert last_hash is not None  # the flush above crossed the marker
            try:
                path = write_snapshot(self.data_dir, n, last_hash, self._symbols, state, sync=self._sync)
            except OSError as exc:
                raise SnapshotWriteError(f"{self.data_dir}: writing snapshot {n} failed: {exc}") from exc
            self._snap_n = n
            self._snapshot_due = n + self.snapshot_every
            self._counters["snapshots"] += 1
            self._prune_snapshots()
            self.last_snapshot_seconds = time.perf_counter() - started
            log.info("storage: wrote %s in %.3fs", path, self.last_snapshot_seconds)
            return path
        finally:
            self._snapshotting = False

    def _prune_snapshots(self) -> None:
        for _n, path in list_snapshots(self.data_dir)[:-KEEP_SNAPSHOTS]:
            try:
                os.unlink(path)
            except OSError as exc:
                log.warning("storage: cannot remove old snapshot %s: %s", path, exc)

    # -- shutdown and queries ------------------------------------------------------------------
    def close(self, engine) -> None:
        """Flush and fsync everything, write a final snapshot, close the files
        and release the data dir. Idempotent."""
        if not self._ready:
            self._unlock_dir()
            return
        try:
            if self._error is None:
                self._commit(self._last_n)
                self.snapshot(engine)
        finally:
            self._release()

    def abandon(self) -> None:
        """Close the files without flushing anything: what a crash leaves
        behind (for tests and benchmarks)."""
        self._release()

    def _release(self) -> None:
        """Stop serving: the writer process exits, the segment is closed, the
        data dir is unlocked."""
        self._ready = False
        self._stop_writer()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._unlock_dir()

    def _stop_writer(self) -> None:
        """Close the writer process's pipe and wait for it to exit (it writes
        every whole frame it received first)."""
        if self._proc is not None:
            status = self._proc.close()
            if status != 0 and self._error is None:
                log.critical("storage: the journal writer process exited with status %s", status)

    def find_order(self, order_id: int) -> dict | None:
        """Orders the engine has forgotten are not indexed: always None.

        The engine keeps ``order_history`` closed orders in memory and in
        every snapshot, so they survive restarts; older ones are only in the
        journal (``jq -c 'select(.[0][1]=="s" and .[0][9]==ID)'`` finds them)."""
        return None

    def statistics(self) -> dict:
        """Counters since ``recover``: records, batches, fsyncs, bytes written,
        snapshots; plus the policy and the last record number."""
        stats = dict(self._counters)
        stats.update(
            fsync=self.fsync,
            writer=self.writer,
            last_record=self._last_n,
            durable_record=self._durable_n,
            snapshot_record=self._snap_n,
            failed=self.failure,
            last_snapshot_seconds=round(self.last_snapshot_seconds, 3),
        )
        return stats

    stats = statistics  # the name api.service looks for

    def _check(self) -> None:
        """Assert the writer's invariants (tests call it between steps)."""
        with self._mu:
            assert 0 <= self._durable_n <= self._sent_n <= self._last_n
            assert self._snap_n <= self._last_n
            if not self._flushing and not self._send_mu.locked():
                assert len(self._pending) + len(self._held) == self._last_n - self._sent_n
            assert len(self._last_hash) == 32


def read_mode(data_dir: str) -> bool | None:
    """The mode recorded in the data dir's ``mode.json``: True with funds,
    False without, None when it has none (``Store._check_mode``).

    Raises:
        ConfigMismatch: the file is unreadable.
    """
    path = os.path.join(data_dir, MODE_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            funds = json.load(f)["funds"]
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigMismatch(f"{path}: unreadable: {exc!r}") from exc
    if type(funds) is not bool:
        raise ConfigMismatch(f"{path}: unreadable: funds is {funds!r}, not true or false")
    return funds


def _mode_advice(funds: bool) -> str:
    """How to start a data dir of this mode (the flag that selects it)."""
    flag = "--auth on" if funds else "--auth off"
    return f"start it with {flag} or use another --data-dir (a data dir keeps the mode it was first run in)"


def _lock_holder(fd: int) -> int | None:
    """The pid written in a ``LOCK`` file (None if unreadable)."""
    try:
        return int(os.pread(fd, 32, 0).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _remaining(deadline: float | None, ticket: int) -> float | None:
    """Seconds left until ``deadline`` (None: no limit).

    Raises:
        DurabilityTimeout: none left.
    """
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise DurabilityTimeout(f"record {ticket} is not durable yet (the journal writer is slow or stopped)")
    return left


class _SnapshotOffChain(StoreError):
    """A snapshot whose hash is not the journal's (try an older one)."""
