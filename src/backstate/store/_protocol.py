"""The Store protocol: everything the runtime asks of persistence.

Reads return plain rows; all writes go through ``commit(batch)``, which applies a
whole ``WriteBatch`` in one transaction or raises and applies nothing. An instance
update whose expected sequence number no longer matches raises ``SequenceConflict``
(the batch is rolled back): a second writer can never fork an instance's history.
"""

from __future__ import annotations

from typing import Protocol

from ._records import (
    CommitResult,
    DeadLetterRow,
    EffectRow,
    HistoryRow,
    IdempotencyRow,
    InboxRow,
    IndexHit,
    IndexQuery,
    InstanceKey,
    InstanceRow,
    LogRow,
    TimerRow,
    WriteBatch,
)

# NOTIFY channels between nodes sharing a PostgreSQL store (see _leases), one line each:
INBOX_CHANNEL = "backstate_inbox"  # "machine/name": it has new inbox rows
STATE_CHANNEL = "backstate_state"  # "machine/name/seq": a committed state
ADOPT_CHANNEL = "backstate_adopt"  # "machine/name": created by a node that does not own it


class StoreError(Exception):
    """The store failed; nothing of the batch was written."""

    code = "store-unavailable"


class SequenceConflict(StoreError):
    code = "sequence-conflict"


class LeaseLost(StoreError):
    """A batch fenced by shard leases found one no longer held by its node."""

    code = "lease-lost"


class Store(Protocol):
    def load_instance(self, key: InstanceKey) -> InstanceRow | None: ...

    def list_instances(self, machine: str, after: str | None, limit: int) -> list[InstanceRow]: ...

    def history(self, key: InstanceKey, after_seq: int, limit: int) -> list[HistoryRow]: ...

    def pending_inbox(self, after_id: int = 0) -> list[InboxRow]:
        """Inbox rows with an id above ``after_id`` (all by default), in delivery order."""
        ...

    def pending_timers(self) -> list[TimerRow]: ...

    def unfinished_effects(self) -> list[EffectRow]: ...

    def dead_letters(self, limit: int) -> list[DeadLetterRow]: ...

    def logs(
        self,
        since: int,
        until: int,
        machine: str | None,
        instance: str | None,
        limit: int,
        *,
        version: str | None = None,
        namespace: str | None = None,
    ) -> list[LogRow]: ...

    def query_index(self, query: IndexQuery) -> list[IndexHit]:
        """One page of a secondary index, read in one statement (so consistent)."""
        ...

    def idempotency_key(self, key: InstanceKey, idempotency_key: str) -> IdempotencyRow | None:
        """The request recorded under ``idempotency_key`` for the instance, if any."""
        ...

    def expire_idempotency_keys(self, before: int) -> int:
        """Forget keys recorded before ``before`` (ms); how many."""
        ...

    def record_version(self, machine: str, version: str, now: int) -> None: ...

    def commit(self, batch: WriteBatch) -> CommitResult: ...

    def close(self) -> None: ...
