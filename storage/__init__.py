"""Durable state for the matching engine: a hash-chained JSON-lines journal of
every accepted command with group commit, periodic snapshots, exact recovery
and an offline verifier (``python -m storage.verify --data-dir DIR``).

See ``storage.store`` for how the service drives it and
``Documentation/DURABILITY.md`` for the on-disk format and guarantees.
"""

from storage.errors import (
    ConfigMismatch,
    CorruptJournal,
    CorruptSnapshot,
    DataDirLocked,
    DurabilityTimeout,
    JournalMissing,
    JournalWriteError,
    ReplayMismatch,
    SnapshotWriteError,
    StoreError,
    UnsupportedFormat,
)
from storage.store import Store

__all__ = [
    "Store",
    "StoreError",
    "CorruptJournal",
    "CorruptSnapshot",
    "ReplayMismatch",
    "ConfigMismatch",
    "DataDirLocked",
    "DurabilityTimeout",
    "JournalMissing",
    "JournalWriteError",
    "SnapshotWriteError",
    "UnsupportedFormat",
]
