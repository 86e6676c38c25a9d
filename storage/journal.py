"""The journal: one JSON object per line, hash-chained, in numbered segments.

Format (see ``Documentation/DURABILITY.md`` for the full description)
    A data dir holds segments ``journal-<first record number, 12 digits>.jsonl``.
    Each line is one accepted command, with the keys always in this order::

        {"n":7,"op":"submit","symbol":"BTC-USDT","side":"buy","order_type":"limit",
         "timestamp":1732467092123456789,"quantity":100,"price":3000000,
         "client_order_id":null,"order_id":7,"trade_ids":[3,4],"sequence":5,
         "prev":"<32 hex>","hash":"<32 hex>"}
        {"n":8,"op":"cancel","symbol":"BTC-USDT","timestamp":...,"order_id":7,
         "sequence":6,"prev":"...","hash":"..."}

    ``n`` counts records from 1 over the data dir's lifetime, without gaps.
    ``hash`` is the first 128 bits (hex) of SHA-256 over the line's bytes up
    to, not including, ``,"hash":`` -- so it covers ``prev`` -- and ``prev``
    is the previous record's ``hash`` (``GENESIS``, 32 zeros, for record 1).
    The ``hash`` is the line's checksum; ``prev`` chains it to everything
    before. Lines are pure ASCII (``client_order_id`` is JSON-escaped).

Invariants checked by ``JournalReader``
    * segment names are contiguous: each starts at the record after the last
      record of the one before;
    * every line ends in ``\\n``, its ``n`` is the expected one, its ``prev``
      equals the previous line's ``hash`` and its ``hash`` matches its bytes;
    * only the very last line of the last segment may fail these checks (a
      torn write: the process or machine died while appending), and only if
      it could be one record (at most one ``{"n":`` and one ``"hash"``). It is
      dropped -- truncated away when ``repair_tail`` is set -- and reported.
      A failure anywhere else raises ``CorruptJournal`` naming the file, the
      byte offset and the record number.

This module does IO only in ``JournalReader`` and ``truncate``; encoding and
replay are pure functions.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator
from json.encoder import encode_basestring_ascii

import msgspec

from engine.events import CancelResult, SubmitResult
from engine.order import OrderType, Side
from storage.errors import CorruptJournal, ReplayMismatch

log = logging.getLogger(__name__)

GENESIS = b"0" * 32
SEGMENT_RE = re.compile(r"journal-(\d{12})\.jsonl")
# ',"hash":"' + 32 hex + '"}' : the fixed-width end of every line (without "\n").
_HASH_TAIL = 43
# '"' + ',"hash":"' + 32 hex + '"}' : prev's 32 hex end 44 bytes before the line's end.
_PREV_END = 44
_PREV_KEY = b',"prev":"'
_HASH_KEY = b',"hash":"'


def segment_name(first_n: int) -> str:
    return f"journal-{first_n:012d}.jsonl"


def list_segments(data_dir: str) -> list[tuple[int, str]]:
    """``(first record number, path)`` of every segment, in order. O(files)."""
    found = []
    for name in os.listdir(data_dir):
        m = SEGMENT_RE.fullmatch(name)
        if m:
            found.append((int(m.group(1)), os.path.join(data_dir, name)))
    found.sort()
    return found


# -- encoding (the writer's hot path) --------------------------------------------------
# Records are formatted with bytes %-formatting from a cached per-(symbol, side,
# type) prefix: measured fastest of %-format, f-strings, json and msgspec for
# this shape (the writer runs under the symbol lock on every order).
_submit_prefixes: dict = {}
_cancel_prefixes: dict = {}


def submit_fields(result: SubmitResult) -> bytes:
    """A submit record's bytes after ``n`` up to the opening quote of ``prev``'s
    value. O(trades). Pure formatting (called under the symbol's lock)."""
    order = result.order
    key = (order.symbol, order.side, order.order_type)
    prefix = _submit_prefixes.get(key)
    if prefix is None:
        prefix = _submit_prefixes[key] = b',"op":"submit","symbol":%b,"side":"%b","order_type":"%b"' % (
            encode_basestring_ascii(order.symbol).encode(),
            order.side.value.encode(),
            order.order_type.value.encode(),
        )
    trades = result.trades
    coid = order.client_order_id
    price = order.price
    return (
        b'%b,"timestamp":%d,"quantity":%d,"price":%b,"client_order_id":%b,"order_id":%d,"trade_ids":[%b],"sequence":%d,"prev":"'
        % (  # noqa: E501
            prefix,
            order.timestamp,
            order.quantity,
            b"null" if price is None else b"%d" % price,
            b"null" if coid is None else encode_basestring_ascii(coid).encode(),
            order.order_id,
            b",".join([b"%d" % t.trade_id for t in trades]) if trades else b"",
            result.sequence,
        )
    )


def cancel_fields(result: CancelResult) -> bytes:
    """A cancel record's bytes after ``n`` up to ``prev``'s opening quote. O(1)."""
    order = result.order
    prefix = _cancel_prefixes.get(order.symbol)
    if prefix is None:
        prefix = _cancel_prefixes[order.symbol] = b',"op":"cancel","symbol":%b' % (
            encode_basestring_ascii(order.symbol).encode()
        )
    return b'%b,"timestamp":%d,"order_id":%d,"sequence":%d,"prev":"' % (
        prefix,
        result.timestamp,
        order.order_id,
        result.sequence,
    )


def chain_line(n: int, fields: bytes, prev: bytes) -> tuple[bytes, bytes]:
    """``(line with its "\\n", its hash)`` for record ``n`` after ``prev``. O(len).

    ``Store.log_*`` inline the same three steps (it is their hot path)."""
    content = b'{"n":%d%b%b"' % (n, fields, prev)
    digest = hashlib.sha256(content).hexdigest()[:32].encode()
    return b'%b,"hash":"%b"}\n' % (content, digest), digest


# -- decoding and replay ------------------------------------------------------------------
class SubmitRecord(msgspec.Struct, tag_field="op", tag="submit", gc=False):
    """A decoded submit line (``prev``/``hash`` are checked by the reader, not kept)."""

    n: int
    symbol: str
    side: Side
    order_type: OrderType
    timestamp: int
    quantity: int
    price: int | None
    client_order_id: str | None
    order_id: int
    trade_ids: list[int]
    sequence: int


class CancelRecord(msgspec.Struct, tag_field="op", tag="cancel", gc=False):
    """A decoded cancel line."""

    n: int
    symbol: str
    timestamp: int
    order_id: int
    sequence: int


# msgspec decodes a line ~6x faster than json.loads (0.7 vs 4 us), which is
# most of the replay budget of a 1M-record restart; it also type-checks.
_decoder = msgspec.json.Decoder(SubmitRecord | CancelRecord)


def decode(line: bytes) -> SubmitRecord | CancelRecord:
    """One verified line -> its record.

    Raises:
        ReplayMismatch: the line is well-chained but not a valid record (a
        writer bug or a format from another version).
    """
    try:
        return _decoder.decode(line)
    except msgspec.DecodeError as exc:
        raise ReplayMismatch(f"not a valid journal record: {exc}: {line[:200]!r}") from None


def apply_record(engine, record: SubmitRecord | CancelRecord) -> None:
    """Replay one decoded record into ``engine`` with its journaled timestamp
    and ids, and check that the engine reproduces its sequence and trade count.

    Runtime complexity: that of the engine command.

    Raises:
        ReplayMismatch: the engine refused the command or diverged from it.
    """
    try:
        if type(record) is SubmitRecord:
            trade_ids = record.trade_ids
            result = engine.submit(
                record.symbol,
                record.side,
                record.order_type,
                record.quantity,
                record.price,
                record.client_order_id,
                timestamp=record.timestamp,
                order_id=record.order_id,
                trade_ids=trade_ids,
            )
            if result.sequence != record.sequence or len(result.trades) != len(trade_ids):
                raise ReplayMismatch(
                    f"record {record.n}: submit replayed to {len(result.trades)} trades and sequence "
                    f"{result.sequence}, the journal has {len(trade_ids)} and {record.sequence}"
                )
        else:
            result = engine.cancel(record.order_id, timestamp=record.timestamp)
            if result.sequence != record.sequence:
                raise ReplayMismatch(
                    f"record {record.n}: cancel replayed to sequence {result.sequence}, "
                    f"the journal has {record.sequence}"
                )
    except ReplayMismatch:
        raise
    except StopIteration:  # the engine wanted more trade ids than were journaled
        raise ReplayMismatch(
            f"record {record.n}: submit replayed to more trades than the journal's {record.trade_ids}"
        ) from None
    except Exception as exc:  # an EngineError: the engine refused a journaled command
        raise ReplayMismatch(f"record {record.n}: replay failed: {exc!r}") from exc


# -- reading and verifying ----------------------------------------------------------------
class TornTail:
    """What was dropped from the end of the journal."""

    __slots__ = ("path", "offset", "size", "record", "reason")

    def __init__(self, path: str, offset: int, size: int, record: int, reason: str) -> None:
        self.path = path
        self.offset = offset
        self.size = size
        self.record = record
        self.reason = reason

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __str__(self) -> str:
        return (
            f"{self.path}: torn last record {self.record} at byte offset {self.offset} "
            f"({self.size} bytes, {self.reason})"
        )


def _bad_line(line: bytes, n: int, prev: bytes) -> str | None:
    """Why ``line`` (without ``\\n``) is not record ``n`` after ``prev``, or None."""
    if len(line) < 100 or line[-_HASH_TAIL : -_HASH_TAIL + 9] != _HASH_KEY or line[-2:] != b'"}':
        return "not a journal record (malformed line)"
    if hashlib.sha256(line[:-_HASH_TAIL]).hexdigest()[:32].encode() != line[-34:-2]:
        return "checksum mismatch (the line's bytes do not match its hash)"
    if not line.startswith(b'{"n":%d,' % n):
        return f"out of order (expected record {n})"
    if line[-_PREV_END - 32 - 9 : -_PREV_END - 32] != _PREV_KEY:
        return "malformed prev field"
    if line[-_PREV_END - 32 : -_PREV_END] != prev:
        return "broken chain (prev does not match the previous record's hash)"
    return None


def _one_record(line: bytes) -> bool:
    """Could ``line`` be one torn record? A crash leaves a prefix of the last
    write (or a zero-filled page); a lost newline between two records, or
    garbage spanning several, is damage."""
    return line.count(b'{"n":') <= 1 and line.count(_HASH_KEY) <= 1


class JournalReader:
    """Verify the whole chain and yield the lines of records after a point.

    ``records(after)`` walks every segment in order, checks every line (see
    the module docstring) and yields ``(n, line)`` for ``n > after``; it
    remembers the hash of every record in ``watch`` (for snapshot anchors).
    When it is exhausted, ``last_n``/``last_hash`` describe the last good
    record, ``last_segment`` its segment and ``torn`` the dropped tail if any.

    ``first_prev``: when the oldest segment does not start at record 1 (older
    segments were pruned), the hash its first record must chain to (from a
    snapshot of the record before it). ``None`` takes the first record's
    ``prev`` on trust (``trusted_start``): the caller must then check a later
    hash against a snapshot (``watch``) before relying on the chain.

    Runtime complexity: O(bytes) for the checks; the caller pays for replay.
    """

    def __init__(
        self, data_dir: str, *, repair_tail: bool = False, watch=(), first_prev: bytes | None = None
    ) -> None:
        self.data_dir = data_dir
        self.repair_tail = repair_tail
        self.watch = set(watch)
        self.first_prev = first_prev
        self.trusted_start = False
        self.hashes: dict[int, bytes] = {}
        self.segments = list_segments(data_dir)
        self.first_n = self.segments[0][0] if self.segments else 1
        self.last_n = 0
        self.last_hash = GENESIS
        self.last_segment: str | None = None
        self.torn: TornTail | None = None
        self.lines = 0
        self.bytes = 0

    def records(self, after: int = 0) -> Iterator[tuple[int, bytes]]:
        segments = self.segments
        if not segments:
            return
        n = self.first_n
        self.last_n = n - 1
        if n == 1:
            prev = GENESIS
        else:  # older segments were pruned
            prev = self.first_prev
            if prev is not None:
                self.last_hash = prev
        sha256 = hashlib.sha256
        watch = self.watch
        hashes = self.hashes
        for index, (first, path) in enumerate(segments):
            is_last_segment = index == len(segments) - 1
            if first != n:
                raise CorruptJournal(
                    f"segment starts at record {first} but the journal continues at record {n} "
                    f"(a segment is missing or misnamed)",
                    path,
                    0,
                    n,
                )
            with open(path, "rb") as f:
                data = f.read()
            self.bytes += len(data)
            lines = data.split(b"\n")
            tail = lines.pop()  # b"" when the segment ends with a newline
            if prev is None and lines:  # see first_prev
                prev = self.last_hash = lines[0][-_PREV_END - 32 : -_PREV_END]
                self.trusted_start = True
            offset = 0
            count = len(lines)
            for i, line in enumerate(lines):
                # Hot loop (1M records at startup): the common checks are inlined;
                # _bad_line explains a failure.
                content = line[:-_HASH_TAIL]
                digest = line[-34:-2]
                if (
                    sha256(content).hexdigest()[:32].encode() != digest
                    or line[-_PREV_END - 32 : -_PREV_END] != prev
                    or not line.startswith(b'{"n":%d,' % n)
                    or line[-_HASH_TAIL : -_HASH_TAIL + 9] != _HASH_KEY
                ):
                    reason = _bad_line(line, n, prev) or "malformed line"
                    if is_last_segment and i == count - 1 and not tail and _one_record(line):
                        self._drop(path, offset, len(data) - offset, n, reason)
                        return
                    raise CorruptJournal(reason, path, offset, n)
                if n in watch:
                    hashes[n] = digest
                if n > after:
                    yield n, line
                prev = digest
                self.last_n = n
                self.last_hash = digest
                self.lines += 1
                offset += len(line) + 1
                n += 1
            self.last_segment = path
            if tail:
                if not is_last_segment:
                    raise CorruptJournal(
                        "segment ends in an unterminated line but is not the last segment", path, offset, n
                    )
                if not _one_record(tail):
                    raise CorruptJournal(
                        "unterminated last line holds more than one record (damage, not a torn write)",
                        path,
                        offset,
                        n,
                    )
                self._drop(path, offset, len(tail), n, "incomplete line (no newline)")
                return

    def _drop(self, path: str, offset: int, size: int, n: int, reason: str) -> None:
        self.torn = TornTail(path, offset, size, n, reason)
        self.last_segment = path
        if self.repair_tail:
            truncate(path, offset)
            log.warning("journal: dropped %s; truncated %s to %d bytes", self.torn, path, offset)


def truncate(path: str, size: int) -> None:
    """Cut ``path`` to ``size`` bytes and make that durable."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
