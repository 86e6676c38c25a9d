"""The journal: one JSON array per line, hash-chained, in numbered segments.

Format v2 (see ``Documentation/DURABILITY.md`` for the full description)
    A data dir holds segments ``journal-v2-<first record number, 12 digits>.jsonl``.
    Each line is one accepted command: a JSON array ``[command, prev, hash]``
    whose ``command`` is itself an array with a fixed field order::

        [[7,"s","BTC-USDT","buy","limit",1732467092123456789,100,3000000,null,7,[3,4],5],"<prev>","<hash>"]
        [[8,"c","BTC-USDT",1732467092123999999,7,6],"<prev>","<hash>"]

    submit: ``[n, "s", symbol, side, order_type, timestamp, quantity, price,
    client_order_id, order_id, [trade ids], sequence]``, and for the order
    types beyond the four a 13th field ``[stop_price, display_quantity,
    post_only, expire_time, quote_quantity]`` (absent for the four: their
    records are unchanged); when the order has an owner, ``extras,
    account_id, stp`` follow (``extras`` that 13th field or null: optional
    trailing fields, a record without them replays as before, without owner);
    cancel: ``[n, "c", symbol, timestamp, order_id, sequence]``;
    amend: ``[n, "a", symbol, timestamp, order_id, quantity, price,
    stop_price, [trade ids], sequence]`` (``null``: that field unchanged);
    expire: ``[n, "e", symbol, timestamp, order_id, sequence]``;
    account opened: ``[n, "o", account_id, name, timestamp]``;
    key issued: ``[n, "k", account_id, key_hash, timestamp]``;
    key revoked: ``[n, "r", key_hash, timestamp]``;
    deposit: ``[n, "d", account_id, asset, amount, timestamp]``;
    withdrawal: ``[n, "w", account_id, asset, amount, timestamp]``
    (``amount``: a positive int in the asset's smallest unit, see
    ``engine.funds``; only in data dirs run with funds, ``--auth on``).
    Keys appear only as their SHA-256 (``api/auth.py``), never in clear.
    ``[trade ids]`` are every trade of the command, those of the stops it
    triggered included (triggers are consequences of the record, which
    replay reproduces; they have no records of their own).
    ``n`` counts records from 1 over the data dir's lifetime, without gaps.
    ``hash`` is BLAKE2b-128 (32 hex digits, ``b2sum -l 128``) over ``prev``'s
    32 hex digits followed by the command's bytes as they stand in the line,
    and ``prev`` is the previous record's ``hash`` (``GENESIS``, 32 zeros, for
    record 1). The ``hash`` is the line's checksum; ``prev`` chains it to
    everything before. Lines are UTF-8 (compact JSON as msgspec writes it).

    Segments of another format version (v1: ``journal-<12 digits>.jsonl``,
    JSON objects with SHA-256) are recognised by name and refused with
    ``UnsupportedFormat``; this version does not read them.

Invariants checked by ``JournalReader``
    * segment names are contiguous: each starts at the record after the last
      record of the one before;
    * every line ends in ``\\n``, its ``n`` is the expected one, its ``prev``
      equals the previous line's ``hash`` and its ``hash`` matches its bytes;
    * only the very last line of the last segment may fail these checks (a
      torn write: the process or machine died while appending), and only if
      it could be one record (at most one command start ``[<digits>,"s"``
      (or another op code: ``OP_CODES``) and one line end ``<hash>"]``). It is dropped -- truncated away when ``repair_tail`` is set --
      and reported. A failure anywhere else raises ``CorruptJournal`` naming
      the file, the byte offset and the record number.

Where the work happens (the writer's hot path)
    ``Store.log_*`` (under the symbol lock) only takes a ticket and appends
    the command's fields as a tuple (``submit_row`` / ``cancel_row``) to a
    list. The group-commit leader, outside the symbol locks, turns the whole
    batch into bytes with ``encode`` -- one ``msgspec`` call for all the
    commands, one BLAKE2b per record, one ``join`` -- and writes it with one
    ``write()``.

This module does IO only in ``JournalReader`` and ``truncate``; encoding and
replay are pure functions.
"""

from __future__ import annotations

import logging
import os
import re
from binascii import hexlify
from collections.abc import Iterator
from hashlib import blake2b
from typing import Literal

import msgspec

from engine.order import OrderType, SelfTradePrevention, Side
from storage.errors import CorruptJournal, ReplayMismatch, UnsupportedFormat
from storage.writer import chain

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
GENESIS = b"0" * 32
SEGMENT_RE = re.compile(r"journal-v2-(\d{12})\.jsonl")
# any journal segment name, of any format version (v1 had no version tag)
_ANY_SEGMENT_RE = re.compile(r"journal-(?:v(\d+)-)?(\d{12})\.jsonl")
# A line (without "\n") is '[' + command + ',"' + prev + '","' + hash + '"]':
_TAIL = 71  # len(',"' + 32 hex + '","' + 32 hex + '"]'): the command is line[1:-71]
_PREV = slice(-69, -37)
_HASH = slice(-34, -2)


def segment_name(first_n: int) -> str:
    return f"journal-v{FORMAT_VERSION}-{first_n:012d}.jsonl"


def list_segments(data_dir: str) -> list[tuple[int, str]]:
    """``(first record number, path)`` of every segment, in order. O(files).

    Raises:
        UnsupportedFormat: the data dir holds segments of another format
        version (this version reads only its own; see the module docstring).
    """
    found = []
    for name in os.listdir(data_dir):
        m = _ANY_SEGMENT_RE.fullmatch(name)
        if m is None:
            continue
        if m.group(1) != str(FORMAT_VERSION):
            version = m.group(1) or "1"
            raise UnsupportedFormat(
                f"{os.path.join(data_dir, name)}: a journal segment of format v{version}; this version "
                f"reads only format v{FORMAT_VERSION} (journal-v{FORMAT_VERSION}-*.jsonl). Older formats are "
                f"not readable: start with an empty data dir"
            )
        found.append((int(m.group(2)), os.path.join(data_dir, name)))
    found.sort()
    return found


# -- encoding (the group-commit leader's hot path) -------------------------------------
# Measured per record (Documentation/DURABILITY.md): a tuple per record and one
# msgspec.encode_lines for the batch beat a bytes %-format per record by ~2x;
# hashing prev + command (one concatenation) beats formatting a line prefix.
_encode_lines = msgspec.json.Encoder().encode_lines


def submit_row(n: int, result) -> tuple:
    """Record ``n``'s command for a ``SubmitResult``, as the tuple ``encode``
    writes. ``Store.log_submit`` inlines it (it runs under the symbol lock)."""
    order = result.order
    trades = result.all_trades() if result.triggered else result.trades
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
    extras = submit_extras(order)
    if order.account_id is not None:  # the owner and its stp: optional trailing fields 14, 15
        return row + (extras, order.account_id, order.stp)
    return row if extras is None else row + (extras,)


def submit_extras(order) -> tuple | None:
    """The 13th field of a submit record: ``None`` for the four original types
    without new fields (the record then has 12)."""
    if (
        order.stop_price is None
        and order.display_quantity is None
        and not order.post_only
        and order.expire_time is None
        and order.quote_quantity is None
    ):
        return None
    return (
        order.stop_price,
        order.display_quantity,
        order.post_only,
        order.expire_time,
        order.quote_quantity,
    )


def amend_row(n: int, result) -> tuple:
    """Record ``n``'s command for an ``AmendResult``."""
    trades = result.all_trades() if result.triggered else result.trades
    return (
        n,
        "a",
        result.order.symbol,
        result.timestamp,
        result.order.order_id,
        result.quantity,
        result.price,
        result.stop_price,
        [t.trade_id for t in trades] if trades else (),
        result.sequence,
    )


def expire_row(n: int, result) -> tuple:
    """Record ``n``'s command for the ``CancelResult`` of an ``expire``."""
    return (n, "e", result.order.symbol, result.timestamp, result.order.order_id, result.sequence)


def cancel_row(n: int, result) -> tuple:
    """Record ``n``'s command for a ``CancelResult``."""
    return (n, "c", result.order.symbol, result.timestamp, result.order.order_id, result.sequence)


def encode_commands(rows: list) -> bytes:
    """The commands of ``rows`` (``submit_row`` / ``cancel_row`` tuples) as
    JSON, one per line: one ``msgspec`` call. O(records + trades). What the
    engine's process sends to the writer process."""
    return _encode_lines(rows)


def encode(rows: list, prev: bytes) -> tuple[bytes, bytes]:
    """The lines of ``rows`` (``submit_row`` / ``cancel_row`` tuples, in
    record order) chained after hash ``prev``: ``(bytes, the last record's
    hash)``. O(records + trades).

    Pure; run by the inline group-commit leader outside the symbol locks:
    one msgspec call encodes every command, then ``storage.writer.chain``
    (one BLAKE2b per record, the only step that must be sequential, then one
    ``join``) -- the same function the writer process runs."""
    lines, prev, _count = chain(_encode_lines(rows), prev)
    return lines, prev


def record_hash(prev: bytes, command: bytes) -> bytes:
    """The ``hash`` of a record whose command's bytes are ``command``, after ``prev``."""
    return hexlify(blake2b(prev + command, digest_size=16).digest())


def chain_line(command: bytes, prev: bytes) -> tuple[bytes, bytes]:
    """``(line with its "\\n", its hash)`` for a command's JSON bytes after
    ``prev``. O(len). For tests and tools; the writer uses ``encode``."""
    digest = record_hash(prev, command)
    return b'[%b,"%b","%b"]\n' % (command, prev, digest), digest


# -- decoding and replay ------------------------------------------------------------------
class SubmitRecord(msgspec.Struct, array_like=True, gc=False):
    """A decoded submit command (``prev``/``hash`` are checked by the reader)."""

    n: int
    op: Literal["s"]
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
    # stop_price, display_quantity, post_only, expire_time, quote_quantity
    extras: tuple[int | None, int | None, bool, int | None, int | None] | None = None
    account_id: int | None = None
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_TAKER


class CancelRecord(msgspec.Struct, array_like=True, gc=False):
    """A decoded cancel command."""

    n: int
    op: Literal["c"]
    symbol: str
    timestamp: int
    order_id: int
    sequence: int


class AccountRecord(msgspec.Struct, array_like=True, gc=False):
    """An account opened (``engine.accounts.AccountRegistry.create``)."""

    n: int
    op: Literal["o"]
    account_id: int
    name: str
    timestamp: int


class KeyRecord(msgspec.Struct, array_like=True, gc=False):
    """An API key issued to an account: its hash only."""

    n: int
    op: Literal["k"]
    account_id: int
    key_hash: str
    timestamp: int


class RevokeRecord(msgspec.Struct, array_like=True, gc=False):
    """An API key revoked (by its hash)."""

    n: int
    op: Literal["r"]
    key_hash: str
    timestamp: int


class DepositRecord(msgspec.Struct, array_like=True, gc=False):
    """Funds credited to an account's available balance (``engine.deposit``)."""

    n: int
    op: Literal["d"]
    account_id: int
    asset: str
    amount: int
    timestamp: int


class WithdrawRecord(msgspec.Struct, array_like=True, gc=False):
    """Funds debited from an account's available balance (``engine.withdraw``)."""

    n: int
    op: Literal["w"]
    account_id: int
    asset: str
    amount: int
    timestamp: int


class AmendRecord(msgspec.Struct, array_like=True, gc=False):
    """A decoded amend command (``None``: that field unchanged)."""

    n: int
    op: Literal["a"]
    symbol: str
    timestamp: int
    order_id: int
    quantity: int | None
    price: int | None
    stop_price: int | None
    trade_ids: list[int]
    sequence: int


class ExpireRecord(msgspec.Struct, array_like=True, gc=False):
    """A decoded expire command (a good-till-time order's cancellation)."""

    n: int
    op: Literal["e"]
    symbol: str
    timestamp: int
    order_id: int
    sequence: int


# msgspec decodes (and type-checks) a line in well under a microsecond, a
# small part of the replay budget of a 1M-record restart.
_submit_decoder = msgspec.json.Decoder(tuple[SubmitRecord, str, str])
_cancel_decoder = msgspec.json.Decoder(tuple[CancelRecord, str, str])
_DECODERS = {
    b"s": _submit_decoder,
    b"c": _cancel_decoder,
    b"a": msgspec.json.Decoder(tuple[AmendRecord, str, str]),
    b"e": msgspec.json.Decoder(tuple[ExpireRecord, str, str]),
    b"o": msgspec.json.Decoder(tuple[AccountRecord, str, str]),
    b"k": msgspec.json.Decoder(tuple[KeyRecord, str, str]),
    b"r": msgspec.json.Decoder(tuple[RevokeRecord, str, str]),
    b"d": msgspec.json.Decoder(tuple[DepositRecord, str, str]),
    b"w": msgspec.json.Decoder(tuple[WithdrawRecord, str, str]),
}
# every op code a record may have (the torn-tail check's record syntax uses them)
OP_CODES = "".join(sorted(op.decode() for op in _DECODERS))


SUBMIT_FIELDS = tuple(SubmitRecord.__struct_fields__)
CANCEL_FIELDS = tuple(CancelRecord.__struct_fields__)
AMEND_FIELDS = tuple(AmendRecord.__struct_fields__)
EXPIRE_FIELDS = tuple(ExpireRecord.__struct_fields__)
_FIELDS = {
    "s": SUBMIT_FIELDS,
    "c": CANCEL_FIELDS,
    "a": AMEND_FIELDS,
    "e": EXPIRE_FIELDS,
    "o": tuple(AccountRecord.__struct_fields__),
    "k": tuple(KeyRecord.__struct_fields__),
    "r": tuple(RevokeRecord.__struct_fields__),
    "d": tuple(DepositRecord.__struct_fields__),
    "w": tuple(WithdrawRecord.__struct_fields__),
}


def as_dict(line: list) -> dict:
    """A line parsed with any JSON parser (``[command, prev, hash]``) ->
    ``{field name: value}`` with the command's fields named as in
    ``SUBMIT_FIELDS`` / ``CANCEL_FIELDS`` / ``AMEND_FIELDS`` /
    ``EXPIRE_FIELDS`` (a submit of one of the four types has no ``extras``),
    plus ``prev`` and ``hash``."""
    command, prev, digest = line
    names = _FIELDS.get(command[1])
    if names is None:
        raise ValueError(f"unknown command {command[1]!r}")
    if command[1] == "s" and len(command) < len(names):  # no owner, no extras (optional fields)
        names = names[: len(command)]
    if len(command) != len(names):
        raise ValueError(f"a {command[1]!r} command has {len(names)} fields, not {len(command)}")
    record = dict(zip(names, command, strict=True))
    record.update(prev=prev, hash=digest)
    return record


Record = (
    SubmitRecord
    | CancelRecord
    | AmendRecord
    | ExpireRecord
    | AccountRecord
    | KeyRecord
    | RevokeRecord
    | DepositRecord
    | WithdrawRecord
)


def decode(line: bytes) -> Record:
    """One verified line -> its record.

    Raises:
        ReplayMismatch: the line is well-chained but not a valid record (a
        writer bug or a format from another version).
    """
    try:
        # the op code follows n: '[[<n>,"s",' (or another of OP_CODES)
        at = line.index(b",") + 2
        decoder = _submit_decoder if line[at : at + 1] == b"s" else _DECODERS.get(line[at : at + 1])
        if decoder is None:
            raise ValueError(f"unknown command {line[at : at + 1]!r}")
        return decoder.decode(line)[0]
    except (msgspec.DecodeError, ValueError) as exc:
        raise ReplayMismatch(f"not a valid journal record: {exc}: {line[:200]!r}") from None


def apply_record(engine, record) -> None:
    """Replay one decoded record into ``engine`` with its journaled timestamp
    and ids, and check that the engine reproduces its sequence and trade count.

    Runtime complexity: that of the engine command.

    Raises:
        ReplayMismatch: the engine refused the command or diverged from it.
    """
    try:
        kind = type(record)
        if kind is SubmitRecord:
            trade_ids = record.trade_ids
            extras = record.extras
            if extras is None:
                result = engine.submit(
                    record.symbol,
                    record.side,
                    record.order_type,
                    record.quantity,
                    record.price,
                    record.client_order_id,
                    record.timestamp,
                    record.order_id,
                    trade_ids,
                    record.account_id,
                    record.stp,
                )
            else:
                stop_price, display_quantity, post_only, expire_time, quote_quantity = extras
                result = engine.submit_extended(
                    record.symbol,
                    record.side,
                    record.order_type,
                    None if quote_quantity is not None else record.quantity,
                    record.price,
                    record.client_order_id,
                    timestamp=record.timestamp,
                    order_id=record.order_id,
                    trade_ids=trade_ids,
                    stop_price=stop_price,
                    display_quantity=display_quantity,
                    post_only=post_only,
                    expire_time=expire_time,
                    quote_quantity=quote_quantity,
                    account_id=record.account_id,
                    stp=record.stp,
                )
            traded = len(result.all_trades()) if result.triggered else len(result.trades)
            if result.sequence != record.sequence or traded != len(trade_ids):
                raise ReplayMismatch(
                    f"record {record.n}: submit replayed to {traded} trades and sequence "
                    f"{result.sequence}, the journal has {len(trade_ids)} and {record.sequence}"
                )
        elif kind is CancelRecord or kind is ExpireRecord:
            command = engine.cancel if kind is CancelRecord else engine.expire
            result = command(record.order_id, timestamp=record.timestamp)
            if result.sequence != record.sequence:
                raise ReplayMismatch(
                    f"record {record.n}: {record.op} replayed to sequence {result.sequence}, "
                    f"the journal has {record.sequence}"
                )
        elif kind is AccountRecord:
            engine.accounts.create(record.name, record.timestamp, record.account_id)
        elif kind is KeyRecord:
            engine.accounts.add_key(record.account_id, record.key_hash, record.timestamp)
        elif kind is RevokeRecord:
            _key, changed = engine.accounts.revoke(record.key_hash, record.timestamp)
            if not changed:
                raise ReplayMismatch(f"record {record.n}: revokes a key that was revoked already")
        elif kind is DepositRecord:
            engine.deposit(record.account_id, record.asset, record.amount)
        elif kind is WithdrawRecord:
            engine.withdraw(record.account_id, record.asset, record.amount)
        else:
            trade_ids = record.trade_ids
            result = engine.amend(
                record.order_id,
                record.quantity,
                record.price,
                record.stop_price,
                timestamp=record.timestamp,
                trade_ids=trade_ids,
            )
            traded = len(result.all_trades())
            if result.sequence != record.sequence or traded != len(trade_ids):
                raise ReplayMismatch(
                    f"record {record.n}: amend replayed to {traded} trades and sequence "
                    f"{result.sequence}, the journal has {len(trade_ids)} and {record.sequence}"
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
    if (
        len(line) < _TAIL + 10
        or line[:2] != b"[["
        or line[-_TAIL : -_TAIL + 2] != b',"'
        or line[-37:-34] != b'","'
        or line[-2:] != b'"]'
    ):
        return "not a journal record (malformed line)"
    if record_hash(line[_PREV], line[1:-_TAIL]) != line[_HASH]:
        return "checksum mismatch (the line's bytes do not match its hash)"
    if not line.startswith(b"[[%d," % n):
        return f"out of order (expected record {n})"
    if line[_PREV] != prev:
        return "broken chain (prev does not match the previous record's hash)"
    return None


# inside a JSON string a quote is escaped, so these only match record syntax
_RECORD_START = re.compile(rb'\[\d+,"[%b]"' % OP_CODES.encode())
_RECORD_END = re.compile(rb'[0-9a-f]{32}"\]')


def _one_record(line: bytes) -> bool:
    """Could ``line`` be one torn record? A crash leaves a prefix of the last
    write (or a zero-filled page); a lost newline between two records, or
    garbage spanning several, is damage."""
    return len(_RECORD_START.findall(line)) <= 1 and len(_RECORD_END.findall(line)) <= 1


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
        hash_ = blake2b
        start = b"[[%d,"
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
                prev = self.last_hash = lines[0][_PREV]
                self.trusted_start = True
            offset = 0
            count = len(lines)
            for i, line in enumerate(lines):
                # Hot loop (1M records at startup): the common checks are inlined;
                # _bad_line explains a failure.
                digest = line[-34:-2]
                if (
                    hexlify(hash_(prev + line[1:-71], digest_size=16).digest()) != digest
                    or line[-69:-37] != prev
                    or not line.startswith(start % n)
                    or line[-37:-34] != b'","'
                    or line[-71:-69] != b',"'
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
