"""What the processor keeps per instance and per unit of work: ``Entry`` (an instance
in memory), ``Work`` (one thing for it to do), ``InstanceState`` (what callers see) and
``Round`` (what one group commit writes)."""

from __future__ import annotations

import asyncio
import operator
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backstate.chart import Snapshot
from backstate.store import IdempotencyRow, InstanceKey, InstanceRow, RawJson, WriteBatch

from ._indexes import IndexEntry

if TYPE_CHECKING:
    from backstate.chart import StartActor

    from ._batches import Prefetched
    from ._deployments import Version
    from ._idempotency import Idempotency, Remembered
from ._timers import Due


@dataclass(frozen=True)
class InstanceState:
    """An instance as callers see it, after a committed transition."""

    machine: str
    name: str
    version: str
    seq: int
    value: Any
    context: Any
    status: str  # the statechart's: active, done, error
    paused: bool
    tags: frozenset[str]
    snapshot: Snapshot = field(repr=False, compare=False)
    ts: int = 0  # when this state was committed (ms)
    created_at: int = 0
    desired_version: str | None = None
    # For the state an event left: why that event selected no transition, if it
    # selected none (``backstate.chart._unhandled``).
    no_transition: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def public_context(self) -> Any:
        return self.context.get("public", {}) if isinstance(self.context, dict) else {}


@dataclass(eq=False)
class Work:
    kind: str  # create | api | inbox | timer | service | pause | resume | delete | desire
    event: dict[str, Any]
    sender: str = "api"
    future: asyncio.Future[InstanceState] | None = None
    inbox_id: int | None = None
    due: Due | None = None
    effect_id: str | None = None
    token: object | None = None
    attempts: int = 0
    auth: dict[str, Any] | None = None
    create: dict[str, Any] | None = None
    event_json: RawJson | None = None  # the event already encoded (by the API)
    idempotency: Idempotency | None = None  # its caller's idempotency key
    key_read: bool = False  # its key was read from the store (Keys.prefetch): key_row
    key_row: IdempotencyRow | None = None
    unhandled: dict[str, Any] | None = None  # why an API event made no transition


@dataclass(eq=False)
class Service:
    task: asyncio.Task[None]
    effect_id: str
    token: object
    # To run it again (a retry policy): what started it, and its attempts (_retries).
    start: StartActor | None = None
    version: Version | None = None
    retry: dict[str, Any] | None = None


@dataclass(eq=False)
class Entry:
    key: InstanceKey
    exists: bool = False
    version: str = ""
    seq: int = 0
    snapshot: Snapshot | None = None
    paused: bool = False
    parent: InstanceKey | None = None
    children: dict[str, InstanceKey] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0
    queue: deque[Work] = field(default_factory=deque)
    services: dict[str, Service] = field(default_factory=dict)
    waiters: list[tuple[asyncio.Future[InstanceState], asyncio.TimerHandle]] = field(
        default_factory=list
    )
    subscribers: set[asyncio.Queue[Any]] = field(default_factory=set)
    blocked: dict[str, int] = field(default_factory=dict)  # sender -> retry time
    # What readers see: the state as of the last commit. The fields above run ahead of
    # it while a batch is being built and committed.
    committed: InstanceState | None = None
    starting: dict[str, str] = field(default_factory=dict)  # child id -> effect id, until started
    desired: str | None = None  # the version to upgrade to at the next settled event
    indexed: frozenset[IndexEntry] | None = None  # as written; None: not known
    busy: bool = False  # its work is being processed (waiting for sandboxed code)
    prefetched: Prefetched | None = None  # its next work's transition, made in a batch
    keys: dict[str, Remembered] = field(default_factory=dict)  # idempotency keys seen here

    def mark(self) -> tuple[Any, ...]:
        """What a step may change of the entry, to undo it (see Steps.section)."""
        return (
            self.exists,
            self.version,
            self.seq,
            self.snapshot,
            self.paused,
            self.parent,
            dict(self.children),
            self.created_at,
            self.updated_at,
            dict(self.services),
            dict(self.starting),
            self.desired,
            self.indexed,
        )

    def restore(self, mark: tuple[Any, ...]) -> None:
        (
            self.exists,
            self.version,
            self.seq,
            self.snapshot,
            self.paused,
            self.parent,
            self.children,
            self.created_at,
            self.updated_at,
            self.services,
            self.starting,
            self.desired,
            self.indexed,
        ) = mark

    @property
    def idle(self) -> bool:
        return not (
            self.queue
            or self.services
            or self.starting
            or self.waiters
            or self.subscribers
            or self.busy
        )

    @property
    def settled(self) -> bool:
        return (
            not self.services
            and not self.starting
            and not any(w.sender in ("self", "service") for w in self.queue)
        )


_BATCH_LISTS = operator.attrgetter(
    *(name for name, f in WriteBatch.__dataclass_fields__.items() if name != "fence")
)


class Round:
    """What one batch writes, plus what to do once it is committed."""

    def __init__(self) -> None:
        self.batch = WriteBatch()
        self.updates: dict[InstanceKey, tuple[int | None, InstanceRow]] = {}
        self.after: list[Callable[[], None]] = []
        self.deliveries: list[tuple[InstanceKey, Work]] = []  # inbox rows, in insert order
        # Callers to answer once the round commits: with the state right after their
        # work when the instance was settled then, else (None) once it settles.
        self.settle: list[tuple[Entry, asyncio.Future[InstanceState], InstanceState | None]] = []
        # Callers answered in ``after`` (failed by the round if its commit fails).
        self.deferred: list[asyncio.Future[InstanceState]] = []
        self.self_sent: set[InstanceKey] = set()  # instances with events to themselves

    @property
    def empty(self) -> bool:
        return not (self.batch or self.after or self.settle or self.updates)

    def _lists(self) -> tuple[list[Any], ...]:
        return (*_BATCH_LISTS(self.batch), self.after, self.deliveries, self.settle, self.deferred)

    def mark(self, keys: list[InstanceKey]) -> tuple[Any, ...]:
        """What a section may change here, for the instances ``keys``, to undo it."""
        return (
            tuple(map(len, self._lists())),
            len(self.updates),
            {k: self.updates.get(k) for k in keys},
            {k: k in self.self_sent for k in keys},
        )

    def rollback(self, mark: tuple[Any, ...]) -> None:
        lengths, count, updates, self_sent = mark
        for items, length in zip(self._lists(), lengths, strict=True):
            del items[length:]
        for key in list(self.updates)[count:]:  # added since (rare: only on failures)
            del self.updates[key]
        for key, update in updates.items():
            if update is not None:
                self.updates[key] = update
        for key, member in self_sent.items():
            if member:
                self.self_sent.add(key)
            else:
                self.self_sent.discard(key)
