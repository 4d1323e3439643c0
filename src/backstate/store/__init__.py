"""backstate.store: persistence behind one ``Store`` protocol.

``SQLiteStore`` is the embedded default (one file, WAL); ``PostgresStore`` shares one
PostgreSQL database between processes. ``open_store(url)`` picks one from a path or URL.
Every write goes through ``Store.commit(WriteBatch)``, one transaction per batch.
"""

from typing import TYPE_CHECKING, Any

from ._control import (
    ControlStore,
    IdpRow,
    KeyRow,
    MachineRow,
    MigrationRow,
    OrgRow,
    SecretRow,
    TokenProviderRow,
    VersionRow,
)
from ._open import open_control, open_store
from ._protocol import LeaseLost, SequenceConflict, Store, StoreError
from ._records import (
    BackfillCompute,
    CommitResult,
    DeadLetterRow,
    EffectRow,
    HistoryRow,
    IdempotencyRow,
    InboxRow,
    IndexBackfillRow,
    IndexEntry,
    IndexHit,
    IndexQuery,
    InstanceKey,
    InstanceRow,
    LogRow,
    RawJson,
    TimerRow,
    WriteBatch,
)
from ._sqlite import SQLiteStore

if TYPE_CHECKING:
    from ._postgres import PostgresStore


def __getattr__(name: str) -> Any:
    # psycopg takes longer to import than the rest of backstate: only PostgreSQL users pay.
    if name == "PostgresStore":
        from ._postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BackfillCompute",
    "CommitResult",
    "ControlStore",
    "DeadLetterRow",
    "EffectRow",
    "HistoryRow",
    "IdempotencyRow",
    "IdpRow",
    "InboxRow",
    "IndexBackfillRow",
    "IndexEntry",
    "IndexHit",
    "IndexQuery",
    "InstanceKey",
    "InstanceRow",
    "KeyRow",
    "LeaseLost",
    "LogRow",
    "MachineRow",
    "MigrationRow",
    "OrgRow",
    "PostgresStore",
    "RawJson",
    "SQLiteStore",
    "SecretRow",
    "SequenceConflict",
    "Store",
    "StoreError",
    "TimerRow",
    "TokenProviderRow",
    "VersionRow",
    "WriteBatch",
    "open_control",
    "open_store",
]
