"""The journal writer process: hash-chains, writes and fsyncs the journal on
the second core while the engine's process keeps matching. The default
writer for ``batch`` and ``always`` (``storage.store.DEFAULT_WRITER``;
``--journal-writer inline`` opts out); ``chain`` is also the inline writer's.

Division of work (``Documentation/DURABILITY.md``, "The writer process")
    The engine's process (``Store``) takes a ticket and a tuple per command
    under the symbol lock, and per group encodes the tuples with one
    ``msgspec`` call and writes the bytes to a pipe (a *data* frame). This
    process splits them into commands, chains them (``chain``: the same code,
    so the same bytes, as the inline writer), appends the lines to the
    segment, fsyncs per policy, and answers with an *ack* carrying the last
    record number it made durable and its hash. The engine's process releases
    the waiters of every record up to it. It never waits for the child while
    it has commands to match: the child works on one group while the next is
    matched.

Protocol (both pipes carry little-endian binary frames)
    parent -> child, ``FRAME`` header (kind, payload length) + payload:
      ``D`` data: commands as ``msgspec`` ``encode_lines`` writes them, one per
            line, in record order, continuing the previous frame's numbers;
      ``R`` roll: payload the 8-byte number of the first record of a new
            segment: fsync and close the current one, start the next;
      ``S`` sync: fsync now, whatever the policy (snapshots, ``close``).
      End of file: the parent is gone or closing: what was received in whole
      frames has been written; fsync and exit.
    child -> parent, fixed-size ``ACK`` records: kind (``A`` after data, ``R``
    after a roll, ``S`` after a sync), the last record number written (and
    fsynced, per policy), the child's fsync count, its bytes written, and the
    last record's hash. ``E`` (error) is the last record the child sends: its
    number field is the length of a UTF-8 message that follows it.

Failure
    Before every ack the child checks its file (``check_file``: one
    ``fstat``): still linked and exactly as long as what it wrote. A journal
    deleted, replaced or truncated under the server thus never receives one
    more acknowledged record.

    The child fails (a write or fsync fails, the check fails, a frame out of
    sequence, it is killed): it acknowledges nothing more. On an error it
    cuts the segment back to its size at the last ack (``cut_unacknowledged``:
    the records it wrote since were never acknowledged, and their requests
    are answered 503, so they must not come back after a restart), sends
    ``E`` with the reason, reports it on stderr (``CRITICAL storage.writer``)
    and exits with status 1; killed, it just closes the ack pipe, and the
    parent cuts the same way (``Store._cut_unacknowledged``). Either way the
    parent's ack reader fails the store (logged ``CRITICAL``): every waiting
    and later ``wait`` raises ``JournalWriteError``, as when an inline write
    fails; the service halts trading (HTTP 503) and must be restarted.

    The parent dies (SIGKILL, a crash): the child reads end of file, writes
    every whole frame it had received, fsyncs, exits and so releases the data
    dir's ``LOCK`` (it holds the same open file, inherited). A partial frame
    at the end -- the parent died while writing it -- is dropped: none of its
    records had been acknowledged. A server restarted meanwhile waits for the
    ``LOCK`` (``Store._lock_dir``).

The parent's side (``WriterProcess``) has two modes. With threads, a reader
thread blocks in ``os.read`` on the ack pipe (the GIL is released while it
waits). Under eventlet (``threading`` monkey-patched, as in the server) the
reader is a green thread: it waits for the pipe with ``hubs.trampoline``, so
the hub wakes it when an ack arrives, with no OS thread, no ``tpool`` hand-off
and no GIL contention; sends use the same non-blocking pipe, and suspend only
the sending green thread if the pipe is full.

This module imports only the standard library: the child runs it as a script
(``python -I storage/writer.py``) and starts in ~30 ms.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
from binascii import hexlify
from hashlib import blake2b
from itertools import islice

log = logging.getLogger(__name__)


def greenlet_current():
    """The running green thread (eventlet's ``getcurrent``; imported late:
    the child process runs this module without eventlet)."""
    from eventlet import getcurrent

    return getcurrent()


FRAME = struct.Struct("<cI")
ACK = struct.Struct("<cQQQ32s")
DATA, ROLL, SYNC, ERROR = b"D", b"R", b"S", b"E"
# The child's command line, the data dir's arguments follow (tests put a shim
# in front of ``main`` to watch or break the child's fsyncs and writes).
CHILD_COMMAND = [sys.executable, "-I", os.path.abspath(__file__)]
_LINE = b'[%b,"%b","%b"]\n'


def chain(commands: bytes, prev: bytes) -> tuple[bytes, bytes, int]:
    """The journal lines of ``commands`` (JSON commands, each ending in a
    newline, in record order) chained after hash ``prev``:
    ``(lines, the last record's hash, number of records)``. O(bytes).

    The one definition of a line's bytes: the inline writer
    (``storage.journal.encode``) and the writer process both call it."""
    lines = commands.split(b"\n")
    lines.pop()  # after the last newline
    hashes = [prev]
    append = hashes.append
    # Hot loop (one pass per record): names bound locally.
    for command in lines:
        prev = hexlify(blake2b(prev + command, digest_size=16).digest())
        append(prev)
    return (
        b"".join(map(_LINE.__mod__, zip(lines, hashes, islice(hashes, 1, None), strict=False))),
        prev,
        len(lines),
    )


def segment_path(data_dir: str, first_n: int) -> str:
    """The segment starting at record ``first_n`` (``storage.journal.segment_name``)."""
    return os.path.join(data_dir, f"journal-v2-{first_n:012d}.jsonl")


class _Child:
    """The writer process's state: the open segment, the next record number,
    the chain's last hash and the counters its acks report."""

    def __init__(self, data_dir: str, segment: str, next_n: int, prev: bytes, policy: str) -> None:
        self.data_dir = data_dir
        self.segment = segment
        self.fd = os.open(segment, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        # What the segment must hold: its size at open plus what was written
        # (checked before every ack), and its size at the last ack (what a
        # failure cuts back to).
        self.size = self.acked_size = os.fstat(self.fd).st_size
        self.next_n = next_n
        self.prev = prev
        self.policy = policy
        self.fsyncs = 0
        self.bytes = 0
        self.parent_gone = False  # the ack pipe broke: write what arrives, acknowledge nothing

    def run(self, inp: int, out: int) -> None:
        """Serve frames from ``inp`` until end of file, then fsync and return.
        Raises on any failure (the caller reports it)."""
        buf = b""
        read = os.read
        header = FRAME.size
        while True:
            chunk = read(inp, 1 << 20)
            if not chunk:
                # The parent closed the pipe or died: every whole frame has
                # been written; a partial one (buf) was never acknowledged.
                self._fsync()
                return
            buf += chunk
            pos = 0
            end = len(buf)
            pending: list[bytes] = []  # chained lines not yet written
            while end - pos >= header:
                kind, size = FRAME.unpack_from(buf, pos)
                if end - pos - header < size:
                    break
                start = pos + header
                pos = start + size
                if kind == DATA:
                    payload = buf[start:pos]
                    if not payload.startswith(b"[%d," % self.next_n):
                        raise RuntimeError(
                            f"data frame out of sequence: expected record {self.next_n}, got {payload[:40]!r}"
                        )
                    lines, self.prev, count = chain(payload, self.prev)
                    self.next_n += count
                    pending.append(lines)
                elif kind == ROLL:
                    self._write(pending)
                    pending = []
                    (first_n,) = struct.unpack("<Q", buf[start:pos])
                    self._roll(first_n)
                    self._ack(out, ROLL)
                elif kind == SYNC:
                    self._write(pending)
                    pending = []
                    self._fsync()
                    self._ack(out, SYNC)
                else:
                    raise RuntimeError(f"unknown frame kind {kind!r}")
            buf = buf[pos:]
            if pending:
                self._write(pending)
                if self.policy == "batch":
                    self._fsync()
                self._ack(out, b"A")

    def _write(self, pending: list[bytes]) -> None:
        if not pending:
            return
        data = b"".join(pending)
        if self.policy == "always":  # one write and one fsync per record
            for line in data.splitlines(keepends=True):
                self._write_all(line)
                self._fsync()
        else:
            self._write_all(data)

    def _write_all(self, data: bytes) -> None:
        self.bytes += len(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        self.size += len(data)

    def check_file(self) -> None:
        """Before an acknowledgement: the segment is still linked and exactly
        as long as what was written to it. A journal deleted, replaced
        (renamed over) or truncated under the server must not receive one
        more acknowledged record. One ``fstat`` per ack."""
        st = os.fstat(self.fd)
        if st.st_nlink == 0:
            raise RuntimeError(f"the journal segment {self.segment} was deleted or replaced under the server")
        if st.st_size != self.size:
            raise RuntimeError(
                f"the journal segment {self.segment} is {st.st_size} bytes, {self.size} were written: "
                f"truncated or written by another process"
            )

    def cut_unacknowledged(self) -> None:
        """After a failure: cut the segment back to its size at the last ack,
        so that records written but never acknowledged (their requests fail)
        are not replayed after a restart. Only ever shorter, only a linked file."""
        st = os.fstat(self.fd)
        if st.st_nlink and st.st_size > self.acked_size:
            os.ftruncate(self.fd, self.acked_size)
            os.fsync(self.fd)

    def _fsync(self) -> None:
        os.fsync(self.fd)
        self.fsyncs += 1

    def _roll(self, first_n: int) -> None:
        if first_n != self.next_n:
            raise RuntimeError(f"roll at record {first_n} but the journal continues at {self.next_n}")
        self._fsync()
        os.close(self.fd)
        self.segment = segment_path(self.data_dir, first_n)
        self.fd = os.open(self.segment, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.size = self.acked_size = os.fstat(self.fd).st_size
        dir_fd = os.open(self.data_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _ack(self, out: int, kind: bytes) -> None:
        if self.parent_gone:
            return
        self.check_file()
        self.acked_size = self.size
        try:
            os.write(out, ACK.pack(kind, self.next_n - 1, self.fsyncs, self.bytes, self.prev))
        except BrokenPipeError:
            # The parent died: finish what it sent (until end of file), then exit.
            self.parent_gone = True


class WriterProcess:
    """The engine process's end of a writer process.

    ``send(kind, payload)`` writes one frame (callers serialise: ``Store``
    holds its send lock). The ack reader calls ``on_ack(kind, n, fsyncs,
    bytes, hash)`` for every ack, ``on_error(message)`` if the child reports
    a failure, and ``on_exit(returncode)`` once when the ack pipe closes
    (after ``close``, or when the child died). ``green``: the reader is an
    eventlet green thread and both pipes are non-blocking (see the module
    docstring); else it is a daemon OS thread and the pipes block.
    ``keep_fds``: descriptors the child inherits (the data dir's ``LOCK``).

    Raises OSError if the child cannot be started.
    """

    def __init__(
        self,
        data_dir: str,
        segment: str,
        next_n: int,
        prev: bytes,
        policy: str,
        *,
        on_ack,
        on_exit,
        on_error=None,
        keep_fds=(),
        green: bool = False,
    ) -> None:
        self.on_ack = on_ack
        self.on_exit = on_exit
        self.on_error = on_error
        self.green = green
        child_in, self._out = os.pipe()
        self._in, child_out = os.pipe()
        try:
            # A 1 MiB pipe holds ~8,000 commands: a slow fsync in the child
            # does not stall the matching.
            fcntl.fcntl(self._out, 1031, 1 << 20)  # F_SETPIPE_SZ
        except OSError:
            pass
        command = [*CHILD_COMMAND, "--data-dir", data_dir, "--segment", segment, "--next", str(next_n)]
        command += ["--prev", prev.decode(), "--fsync", policy]
        try:
            # keep_fds: the data dir's LOCK, held until the child has exited
            self.process = subprocess.Popen(
                command, stdin=child_in, stdout=child_out, pass_fds=tuple(keep_fds), close_fds=True
            )
        except BaseException:
            for fd in (self._in, self._out):
                os.close(fd)
            raise
        finally:
            os.close(child_in)
            os.close(child_out)
        self.closed = False
        if green:
            from eventlet import hubs, patcher, spawn

            real_os = patcher.original("os")
            self._read, self._write = real_os.read, real_os.write
            self._trampoline = hubs.trampoline
            self._hub = hubs.get_hub()  # the server's one OS thread's hub
            self._listener = None  # the reader's standing interest in the ack pipe
            self._drained = False  # the last read emptied the pipe
            os.set_blocking(self._in, False)
            os.set_blocking(self._out, False)
            self._reader = spawn(self._read_acks)
        else:
            self._read, self._write = os.read, os.write
            self._trampoline = None
            self._reader = threading.Thread(target=self._read_acks, name="journal-writer-acks", daemon=True)
            self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        """Write one frame. O(payload). Under eventlet a full pipe suspends
        only the calling green thread. Raises OSError (``BrokenPipeError``)
        if the child is gone."""
        data = FRAME.pack(kind, len(payload)) + payload
        out = self._out
        write = self._write
        while True:
            try:
                done = write(out, data)
            except BlockingIOError:  # green only: the pipe is full
                self._trampoline(out, write=True)
                continue
            if done == len(data):
                return  # usually at the first write
            data = memoryview(data)[done:]  # a short write: the rest, without copying

    def _recv(self, fd: int) -> bytes:
        if self._trampoline is None:
            return self._read(fd, 1 << 16)
        while True:
            if self._drained:
                # This green thread sleeps; the hub resumes it when the pipe is
                # readable. Registered once and kept (``trampoline`` would add
                # and remove an epoll registration around every ack: two
                # syscalls and a listener per group commit). Only this green
                # thread waits anywhere on the pipe; the registration is level-
                # triggered, so bytes that arrived meanwhile wake it at once.
                hub = self._hub
                if self._listener is None:
                    me = greenlet_current()
                    self._listener = hub.add(hub.READ, fd, me.switch, me.throw, None)
                hub.switch()
            try:
                data = self._read(fd, 1 << 16)
            except BlockingIOError:
                self._drained = True
                continue
            # A short read emptied the pipe: wait for the hub before reading
            # again, instead of a read that fails with EAGAIN after every ack.
            self._drained = len(data) < 1 << 16
            return data

    def _read_acks(self) -> None:
        fd = self._in
        size = ACK.size
        unpack = ACK.unpack_from
        on_ack = self.on_ack
        buf = b""
        try:
            while True:
                chunk = self._recv(fd)
                if not chunk:
                    break
                buf += chunk
                pos = 0
                while len(buf) - pos >= size:
                    record = unpack(buf, pos)
                    if record[0] == ERROR:
                        if len(buf) - pos - size < record[1]:
                            break  # the message is not complete yet
                        message = buf[pos + size : pos + size + record[1]].decode("utf-8", "replace")
                        pos += size + record[1]
                        if self.on_error is not None:
                            self.on_error(message)
                        continue
                    on_ack(*record)
                    pos += size
                buf = buf[pos:]
        except Exception:
            log.exception("storage: reading the journal writer's acknowledgements failed")
        finally:
            if self._trampoline is not None and self._listener is not None:
                self._hub.remove(self._listener)
                self._listener = None
            os.close(fd)
            self.on_exit(self.process.wait())

    def close(self) -> int:
        """End of file for the child (it writes every whole frame sent,
        fsyncs and exits); wait for it to exit and for the reader to finish;
        return the child's exit status. Idempotent."""
        if not self.closed:
            self.closed = True
            os.close(self._out)
        status = self.process.wait()
        if self.green:
            if self._reader is not greenlet_current():
                self._reader.wait()
        elif self._reader is not threading.current_thread():
            self._reader.join()
        return status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="the journal writer process (started by storage.Store)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--segment", required=True, help="the segment to append to")
    p.add_argument("--next", type=int, required=True, help="the number of the next record")
    p.add_argument("--prev", required=True, help="the hash of the record before it (32 hex digits)")
    p.add_argument("--fsync", choices=("batch", "always", "off"), required=True)
    args = p.parse_args(argv)
    # Ctrl-C reaches the whole process group: the parent shuts down cleanly
    # (flush, sync, snapshot) and then closes the pipe; the child must outlive it.
    # SIGTERM to the group likewise: end of file is the child's only stop signal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = None
    try:
        child = _Child(args.data_dir, args.segment, args.next, args.prev.encode(), args.fsync)
        child.run(0, 1)
    except BaseException as exc:  # noqa: BLE001 -- anything: report it and stop acknowledging
        where = child.segment if child is not None else args.segment
        message = f"writing the journal {where} failed: {exc!r}"
        if child is not None and not child.parent_gone:
            try:
                child.cut_unacknowledged()
            except OSError as cut:
                message += f" (cutting the unacknowledged records failed too: {cut!r})"
        if child is None or not child.parent_gone:
            try:
                data = message.encode()
                os.write(1, ACK.pack(ERROR, len(data), 0, 0, b"0" * 32) + data)
            except OSError:
                pass
        sys.stderr.write(
            f"CRITICAL storage.writer (pid {os.getpid()}): {message}; no further records are acknowledged\n"
        )
        sys.stderr.flush()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
