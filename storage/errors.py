"""The storage layer's errors. Every one of them means "do not serve": the
service reports it at startup (or on the failing request) and stops.

    StoreError                  base; ``str(e)`` is the operator's message
     +-- CorruptJournal         a journal record fails its checks (not the torn last one);
     |                          carries ``path``, ``offset`` (byte) and ``record`` (number)
     +-- CorruptSnapshot        a snapshot is unusable and no older one or full journal
     |                          can stand in for it
     +-- ReplayMismatch         a journaled command replays to a different result (the
     |                          engine's rules or the symbol table changed)
     +-- ConfigMismatch         the data dir was written with other symbol specs, or in
     |                          the other mode (with balances, --auth on, or without)
     +-- DataDirLocked          another process holds the data dir
     +-- JournalWriteError      writing or syncing the journal failed, the writer process
     |                          died, or the journal file was deleted, replaced or
     |                          truncated under the server; the store is failed and every
     |                          later ``wait`` raises it too (the service halts: HTTP 503)
     +-- DurabilityTimeout      a ``wait`` with a timeout (a read barrier) ran out before
     |                          its record was durable; the store is not failed
     +-- JournalMissing         the data dir was used before but its journal is gone
     |                          (startup refuses unless ``allow_empty``)
     +-- SnapshotWriteError     a snapshot could not be written (the journal is fine;
     |                          the periodic path logs it and retries later)
     +-- UnsupportedFormat      the data dir holds journal segments of another format
                                version (e.g. v1 ``journal-<n>.jsonl``), which this
                                version does not read
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every storage error."""


class CorruptJournal(StoreError):
    """A journal record is damaged, missing or out of order.

    ``path`` is the segment file, ``offset`` the byte offset of the record's
    line in it, ``record`` the record number expected there.
    """

    def __init__(
        self, message: str, path: str | None = None, offset: int | None = None, record: int | None = None
    ) -> None:
        where = []
        if path is not None:
            where.append(path)
        if offset is not None:
            where.append(f"byte offset {offset}")
        if record is not None:
            where.append(f"record {record}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.path = path
        self.offset = offset
        self.record = record


class CorruptSnapshot(StoreError):
    """A snapshot file is damaged and nothing can replace it."""


class ReplayMismatch(StoreError):
    """Replaying a record did not reproduce what was journaled."""


class ConfigMismatch(StoreError):
    """The engine's symbol specs, or its mode (with or without funds), differ
    from the ones the data dir was written with."""


class DataDirLocked(StoreError):
    """Another process (or another ``Store``) has the data dir open."""


class JournalWriteError(StoreError):
    """The journal could not be written or synced; nothing after it is durable."""


class DurabilityTimeout(StoreError):
    """A bounded ``wait`` ran out before its record was durable (the store
    is not failed: the writer is slow or stopped)."""


class JournalMissing(StoreError):
    """The data dir was used before (``IDENTITY``) but holds no journal."""


class SnapshotWriteError(StoreError):
    """A snapshot file could not be written; the journal is unaffected."""


class UnsupportedFormat(StoreError):
    """The data dir was written in a journal format this version does not read."""
