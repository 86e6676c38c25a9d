"""Snapshots: the whole engine state after record ``n``, in one JSON file.

Format
    ``snapshot-<n, 12 digits>.json`` is one line of JSON::

        {"format":"matching-engine snapshot","version":1,"n":250000,
         "hash":"<32 hex: the journal hash of record n>","created":"2026-...Z",
         "symbols":[{"symbol":"BTC-USDT","tick_size":"0.01",...}, ...],
         "engine":{... MatchingEngine.snapshot() ...},
         "checksum":"<64 hex>"}

    ``checksum`` is SHA-256 over every byte before ``,"checksum":``; ``hash``
    ties the snapshot to the journal's chain (startup refuses a snapshot whose
    ``hash`` differs from the chain's hash of record ``n``).

Writing is atomic: a temp file in the same directory, fsynced, renamed over
the final name, then the directory fsynced. A crash leaves either the old set
of snapshots or the new one, plus at most a ``*.tmp`` that startup deletes.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import UTC, datetime

import msgspec

from storage.errors import CorruptSnapshot

SNAPSHOT_RE = re.compile(r"snapshot-(\d{12})\.json")
_CHECKSUM_KEY = b',"checksum":"'
FORMAT = "matching-engine snapshot"
VERSION = 1


def snapshot_name(n: int) -> str:
    return f"snapshot-{n:012d}.json"


def list_snapshots(data_dir: str) -> list[tuple[int, str]]:
    """``(n, path)`` of every snapshot file, oldest first. O(files)."""
    found = []
    for name in os.listdir(data_dir):
        m = SNAPSHOT_RE.fullmatch(name)
        if m:
            found.append((int(m.group(1)), os.path.join(data_dir, name)))
    found.sort()
    return found


def spec_dict(spec) -> dict:
    """A ``SymbolSpec``'s defining fields as strings (what the journal's
    integers mean)."""
    return {
        "symbol": spec.symbol,
        "base": spec.base,
        "quote": spec.quote,
        "tick_size": str(spec.tick_size),
        "lot_size": str(spec.lot_size),
        "maker_fee": str(spec.maker_fee),
        "taker_fee": str(spec.taker_fee),
    }


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, sync=os.fsync) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the
    new one, never a mix: temp file, fsync, rename, fsync the directory.
    ``sync`` replaces ``os.fsync`` for the file (the store passes one that
    does not block green threads)."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            sync(fd)
        finally:
            os.close(fd)
    except OSError:
        os.unlink(tmp)
        raise
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")


def encode_snapshot(n: int, last_hash: bytes, symbols: list[dict], state: dict) -> bytes:
    """The snapshot file's bytes. O(state)."""
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    head = {
        "format": FORMAT,
        "version": VERSION,
        "n": n,
        "hash": last_hash.decode("ascii"),
        "created": created,
        "symbols": symbols,
        "engine": state,
    }
    # msgspec: ~5x faster than json.dumps on a large engine (0.05 s against
    # 0.25 s for 200,000 resting orders), the same compact JSON but UTF-8 as is
    # (json.dumps escaped non-ASCII text); integers of any size round-trip.
    body = msgspec.json.encode(head)
    content = body[:-1]  # without the closing brace
    checksum = hashlib.sha256(content).hexdigest().encode()
    return b'%b,"checksum":"%b"}\n' % (content, checksum)


def write_snapshot(
    data_dir: str, n: int, last_hash: bytes, symbols: list[dict], state: dict, sync=os.fsync
) -> str:
    """Write ``snapshot-<n>.json`` atomically; return its path."""
    path = os.path.join(data_dir, snapshot_name(n))
    atomic_write(path, encode_snapshot(n, last_hash, symbols, state), sync)
    return path


def read_snapshot(path: str) -> dict:
    """Load and check one snapshot file. O(size).

    Raises:
        CorruptSnapshot: unreadable, truncated, checksum mismatch, or a name
        that disagrees with its ``n``.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise CorruptSnapshot(f"{path}: cannot read: {exc}") from exc
    data = data.rstrip(b"\n")
    cut = data.rfind(_CHECKSUM_KEY)
    if cut < 0 or not data.endswith(b'"}') or len(data) - cut != len(_CHECKSUM_KEY) + 64 + 2:
        raise CorruptSnapshot(f"{path}: truncated or malformed (no checksum at the end)")
    expected = data[cut + len(_CHECKSUM_KEY) : -2]
    if hashlib.sha256(data[:cut]).hexdigest().encode() != expected:
        raise CorruptSnapshot(f"{path}: checksum mismatch (the file's bytes are damaged)")
    try:
        snap = msgspec.json.decode(data)
    except ValueError as exc:  # msgspec.DecodeError is a ValueError
        raise CorruptSnapshot(f"{path}: not valid JSON: {exc}") from exc
    if snap.get("format") != FORMAT or snap.get("version") != VERSION:
        raise CorruptSnapshot(
            f"{path}: unknown format {snap.get('format')!r} version {snap.get('version')!r}"
        )
    m = SNAPSHOT_RE.fullmatch(os.path.basename(path))
    if m and int(m.group(1)) != snap["n"]:
        raise CorruptSnapshot(f"{path}: the file name says record {m.group(1)} but it holds {snap['n']}")
    snap["hash"] = snap["hash"].encode("ascii")
    return snap
