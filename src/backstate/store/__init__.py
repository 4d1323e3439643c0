"""backstate.store: persistence behind one ``Store`` protocol.

``SQLiteStore`` is the embedded default (one file, WAL). Every write goes through
``Store.commit(WriteBatch)``, one transaction per batch.
"""

from ._control import (
    ControlStore,
    IdpRow,
    KeyRow,
    MachineRow,
    OrgRow,
    TokenProviderRow,
    VersionRow,
)
from ._protocol import SequenceConflict, Store, StoreError
from ._records import (
    CommitResult,
    DeadLetterRow,
    EffectRow,
    HistoryRow,
    InboxRow,
    InstanceKey,
    InstanceRow,
    LogRow,
    RawJson,
    TimerRow,
    WriteBatch,
)
from ._sqlite import SQLiteStore

__all__ = [
    "CommitResult",
    "ControlStore",
    "DeadLetterRow",
    "EffectRow",
    "HistoryRow",
    "IdpRow",
    "InboxRow",
    "InstanceKey",
    "InstanceRow",
    "KeyRow",
    "LogRow",
    "MachineRow",
    "OrgRow",
    "RawJson",
    "SQLiteStore",
    "SequenceConflict",
    "Store",
    "StoreError",
    "TimerRow",
    "TokenProviderRow",
    "VersionRow",
    "WriteBatch",
]
