"""Rows the store reads and the write batch it commits atomically."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

InstanceKey = tuple[str, str]  # (machine, instance)


class RawJson(str):
    """JSON text already encoded by the caller; stores write it as it is (the runtime
    serialises each snapshot once and uses it for both the instance and its history)."""


@dataclass(slots=True)
class InstanceRow:
    machine: str
    name: str
    version: str
    seq: int
    snapshot: Any  # a JSON object, or RawJson when written
    status: str  # "running" | "paused"
    parent: InstanceKey | None
    created_at: int
    updated_at: int
    children: dict[str, InstanceKey] = field(default_factory=dict)
    desired_version: str | None = None  # upgrade to this version at the next event


@dataclass(slots=True)
class HistoryRow:
    seq: int
    event: Any  # JSON objects when read; RawJson allowed when written
    snapshot: Any
    ts: int


@dataclass(slots=True)
class InboxRow:
    id: int
    machine: str
    instance: str
    event: dict[str, Any]
    sender: str
    priority: int
    attempts: int
    not_before: int


@dataclass(slots=True)
class TimerRow:
    machine: str
    instance: str
    key: str
    event: dict[str, Any]
    due: int
    to: str
    attempts: int


@dataclass(slots=True)
class EffectRow:
    id: str
    machine: str
    instance: str
    kind: str  # "action" | "service"
    name: str
    child: str | None
    # A service under a retry policy: its attempts so far (JSON, see runtime/_retries).
    retry: Any = None


@dataclass(slots=True)
class DeadLetterRow:
    id: int
    machine: str
    instance: str
    event: dict[str, Any]
    sender: str
    reason: str
    attempts: int
    ts: int


@dataclass(slots=True)
class LogRow:
    ts: int
    machine: str
    version: str
    instance: str
    level: str
    message: str


@dataclass(slots=True)
class IdempotencyRow:
    """A request applied under an ``Idempotency-Key``: what it asked (``fingerprint``,
    a digest of its body) and the state it was answered with (``version``, ``seq``: a
    row of the instance's history). Scoped by the instance (its machine names the org)."""

    machine: str
    instance: str
    key: str
    fingerprint: str
    version: str
    seq: int
    created_at: int


# One value of a secondary index: (index, kind, number, text); kind 0 is a number
# (text is ""), kind 1 a string (number is 0). Numbers sort before strings.
IndexEntry = tuple[str, int, float, str]


@dataclass(slots=True)
class IndexHit:
    kind: int
    number: float
    text: str
    instance: str

    @property
    def value(self) -> float | str:
        if self.kind == 0:
            return int(self.number) if self.number.is_integer() else self.number
        return self.text


@dataclass(frozen=True, slots=True)
class IndexBackfillRow:
    """An index added to a machine that already had instances (``Store.add_index``):
    its selector, and how far the backfill of the existing instances has come.

    ``state`` is ``backfilling``, ``ready`` or ``failed`` (``error`` says why, naming the
    instance). ``after`` is the cursor: every instance named up to it (byte order) is
    indexed. ``total`` is the number of instances when the index was added (the number
    walked once ready); ``skipped`` counts values that could not be indexed
    (``skip_note`` is the first one's message)."""

    machine: str
    name: str
    selector: str
    state: str
    after: str
    done: int
    total: int
    skipped: int
    skip_note: str | None
    error: str | None
    created_at: int
    updated_at: int


# A backfill batch's rows (instance, version, snapshot JSON) -> each instance's entries
# for the index, and the messages of values that could not be indexed.
BackfillCompute = Callable[
    [list[tuple[str, str, str]]], tuple[list[tuple[str, frozenset[IndexEntry]]], list[str]]
]


@dataclass(slots=True)
class IndexQuery:
    """A page of one index: entries with ``kind`` (None: any) whose value compares to
    ``value`` by ``op`` (eq ne gt gte lt lte; None: all), in (kind, value, instance)
    order, strictly after the cursor ``after`` (a previous hit's position)."""

    machine: str
    index: str
    op: str | None = None
    kind: int | None = None
    value: float | str | None = None
    descending: bool = False
    limit: int = 100
    after: tuple[int, float, str, str] | None = None


@dataclass(slots=True)
class WriteBatch:
    """Everything one commit writes. Operations apply in the order of the lists below;
    ``instance_updates`` carry the sequence number they expect to replace."""

    instance_creates: list[InstanceRow] = field(default_factory=list)
    instance_updates: list[tuple[InstanceKey, int, InstanceRow]] = field(default_factory=list)
    status_updates: list[tuple[InstanceKey, str]] = field(default_factory=list)
    instance_deletes: list[InstanceKey] = field(default_factory=list)
    history: list[tuple[InstanceKey, HistoryRow]] = field(default_factory=list)
    inbox_inserts: list[InboxRow] = field(default_factory=list)
    inbox_deletes: list[int] = field(default_factory=list)
    inbox_retries: list[tuple[int, int, int]] = field(
        default_factory=list
    )  # id, attempts, not_before
    # In order: a TimerRow schedules (or replaces) a timer, (key, timer) cancels one.
    timer_ops: list[TimerRow | tuple[InstanceKey, str]] = field(default_factory=list)
    effect_inserts: list[EffectRow] = field(default_factory=list)
    effect_done: list[str] = field(default_factory=list)
    effect_retries: list[tuple[str, Any]] = field(default_factory=list)  # (id, retry)
    dead_letters: list[DeadLetterRow] = field(default_factory=list)
    dead_letter_deletes: list[int] = field(default_factory=list)
    logs: list[LogRow] = field(default_factory=list)
    # An instance's index entries, replacing all it had (written with its transition).
    index_puts: list[tuple[InstanceKey, frozenset[IndexEntry]]] = field(default_factory=list)
    desired_updates: list[tuple[InstanceKey, str | None]] = field(default_factory=list)
    # Requests applied under an idempotency key (written with their transition, replacing
    # an expired row of the same key), and the later answers of those whose instance
    # settled after their transition: (instance, key, version, seq).
    idempotency_puts: list[IdempotencyRow] = field(default_factory=list)
    idempotency_answers: list[tuple[InstanceKey, str, str, int]] = field(default_factory=list)
    # Many nodes (PostgreSQL): notifications sent on commit as (channel, line); and the
    # (node, shards) whose leases the node must still hold for the batch to commit.
    notices: list[tuple[str, str]] = field(default_factory=list)
    fence: tuple[str, list[int]] | None = None

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in self.__dataclass_fields__ if name != "fence")


@dataclass(slots=True)
class CommitResult:
    inbox_ids: list[int]
