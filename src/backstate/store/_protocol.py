"""The Store protocol: everything the runtime asks of persistence.

Reads return plain rows; all writes go through ``commit(batch)``, which applies a
whole ``WriteBatch`` in one transaction or raises and applies nothing. An instance
update whose expected sequence number no longer matches raises ``SequenceConflict``
(the batch is rolled back): a second writer can never fork an instance's history.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Protocol

from ._records import (
    BackfillCompute,
    CommitResult,
    DeadLetterRow,
    EffectRow,
    HistoryRow,
    IdempotencyRow,
    InboxRow,
    IndexBackfillRow,
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

    # Indexes added to a machine with instances, and their backfills (see _backfills).

    def add_index(self, machine: str, name: str, selector: str) -> IndexBackfillRow | None:
        """Record an added index as backfilling; None if the machine has one so named."""
        ...

    def index_backfills(self, machine: str | None = None) -> list[IndexBackfillRow]:
        """The added indexes of one machine, or of all."""
        ...

    def claim_backfill(
        self, machine: str, name: str, owner: str, ttl_ms: int, grace_ms: int
    ) -> bool:
        """Take or renew the lease of a backfill at least ``grace_ms`` old; whether held."""
        ...

    def backfill_step(
        self,
        machine: str,
        name: str,
        owner: str,
        limit: int,
        compute: BackfillCompute,
        ttl_ms: int,
    ) -> IndexBackfillRow | None:
        """Index the next ``limit`` instances after the cursor with ``compute`` and move
        the cursor, in one transaction; the new progress, or None if ``owner`` does
        not hold the lease (then nothing is written). ``compute`` may raise: nothing is
        written then either."""
        ...

    def fail_backfill(self, machine: str, name: str, owner: str, error: str) -> None: ...

    def release_backfills(self, owner: str) -> None:
        """Give up ``owner``'s leases (a clean shutdown)."""
        ...

    def drop_indexes(self, machine: str) -> None:
        """Forget a machine's added indexes."""
        ...

    def idempotency_key(self, key: InstanceKey, idempotency_key: str) -> IdempotencyRow | None:
        """The request recorded under ``idempotency_key`` for the instance, if any."""
        ...

    def idempotency_keys(
        self, wanted: Sequence[tuple[InstanceKey, str]]
    ) -> dict[tuple[InstanceKey, str], IdempotencyRow]:
        """The requests recorded under each (instance, key) of ``wanted`` that has one."""
        ...

    def expire_idempotency_keys(self, before: int) -> int:
        """Forget keys recorded before ``before`` (ms); how many."""
        ...

    def record_version(self, machine: str, version: str, now: int) -> None: ...

    def commit(self, batch: WriteBatch) -> CommitResult: ...

    def commit_async(self, batch: WriteBatch) -> Awaitable[CommitResult]:
        """``commit`` for the event loop: the runtime's commits, made while it goes on."""
        ...

    def close(self) -> None: ...
