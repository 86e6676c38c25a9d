"""The journal writer process: hash-chains, writes and fsyncs the journal on
the second core while the engine's process keeps matching.

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
      frames has been written; exit.
    child -> parent, fixed-size ``ACK`` records: kind (``A`` after data, ``R``
    after a roll, ``S`` after a sync), the last record number written (and
    fsynced, per policy), the child's fsync count, its bytes written, and the
    last record's hash.

Failure
    On any error (a write or fsync failing, a frame out of sequence) the child
    reports it on stderr and exits with status 1 before acknowledging
    anything more; the parent sees the ack pipe close, fails the store and
    every later ``wait`` raises ``JournalWriteError``. If the parent dies, the
    child sees end of file, exits, and the records it had written and not yet
    acknowledged stay in the file, like records in the page cache of a
    crashed inline writer (recovery drops at most a torn last line).

This module imports only the standard library: the child runs it as a script
(``python -I storage/writer.py``) and starts in a few milliseconds.
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

FRAME = struct.Struct("<cI")
ACK = struct.Struct("<cQQQ32s")
DATA, ROLL, SYNC = b"D", b"R", b"S"
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
        self.next_n = next_n
        self.prev = prev
        self.policy = policy
        self.fsyncs = 0
        self.bytes = 0

    def run(self, inp: int, out: int) -> None:
        buf = b""
        read = os.read
        header = FRAME.size
        while True:
            chunk = read(inp, 1 << 20)
            if not chunk:
                return  # the parent closed the pipe or died
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
        dir_fd = os.open(self.data_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _ack(self, out: int, kind: bytes) -> None:
        os.write(out, ACK.pack(kind, self.next_n - 1, self.fsyncs, self.bytes, self.prev))


class WriterProcess:
    """The engine process's end of a writer process.

    ``send(kind, payload)`` writes one frame (callers serialise: ``Store``
    holds its send lock). A reader thread -- a green thread under eventlet,
    where ``threading`` and ``os.read`` are monkey-patched, so no ``tpool``
    hand-off -- calls ``on_ack(kind, n, fsyncs, bytes, hash)`` for every ack,
    and ``on_exit(returncode)`` once when the pipe closes (after ``close``,
    or when the child died). ``green``: set the request pipe non-blocking so
    that a full pipe suspends only the sending green thread.
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
        keep_fds=(),
        green: bool = False,
    ) -> None:
        self.on_ack = on_ack
        self.on_exit = on_exit
        child_in, self._out = os.pipe()
        self._in, child_out = os.pipe()
        try:
            # A 1 MiB pipe holds ~8,000 commands: a slow fsync in the child
            # does not stall the matching.
            fcntl.fcntl(self._out, 1031, 1 << 20)  # F_SETPIPE_SZ
        except OSError:
            pass
        command = [sys.executable, "-I", os.path.abspath(__file__), "--data-dir", data_dir]
        command += ["--segment", segment, "--next", str(next_n), "--prev", prev.decode(), "--fsync", policy]
        try:
            # keep_fds: the data dir's LOCK, held until the child has exited
            self.process = subprocess.Popen(
                command, stdin=child_in, stdout=child_out, pass_fds=tuple(keep_fds), close_fds=True
            )
        finally:
            os.close(child_in)
            os.close(child_out)
        if green:
            os.set_blocking(self._out, False)
        self.closed = False
        self._reader = threading.Thread(target=self._read_acks, name="journal-writer-acks", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        """Write one frame. Raises OSError (``BrokenPipeError``) if the child is gone."""
        view = memoryview(FRAME.pack(kind, len(payload)) + payload)
        out = self._out
        while view:
            view = view[os.write(out, view) :]

    def _read_acks(self) -> None:
        fd = self._in
        size = ACK.size
        unpack = ACK.unpack_from
        buf = b""
        try:
            while True:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                buf += chunk
                end = len(buf) - len(buf) % size
                for pos in range(0, end, size):
                    self.on_ack(*unpack(buf, pos))
                buf = buf[end:]
        except Exception:
            log.exception("storage: reading the journal writer's acknowledgements failed")
        finally:
            os.close(fd)
            self.on_exit(self.process.wait())

    def close(self) -> int:
        """End of file for the child (it has written every whole frame sent);
        wait for it to exit; return its exit status. Idempotent."""
        if not self.closed:
            self.closed = True
            os.close(self._out)
        status = self.process.wait()
        if self._reader is not threading.current_thread():
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
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    child = None
    try:
        child = _Child(args.data_dir, args.segment, args.next, args.prev.encode(), args.fsync)
        child.run(0, 1)
    except BaseException as exc:  # noqa: BLE001 -- anything: report it and stop acknowledging
        where = child.segment if child is not None else args.segment
        sys.stderr.write(
            f"CRITICAL storage.writer (pid {os.getpid()}): writing the journal {where} failed: "
            f"{exc!r}; no further records are acknowledged\n"
        )
        sys.stderr.flush()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
