"""The processor: applies events to instances durably, one batch at a time.

One asyncio task owns all instance state in this process. Each round it takes every
instance with ready work, applies up to ``BATCH_PER_INSTANCE`` events to each (one at a
time, in queue order), and commits everything the round wrote in ONE store transaction
(group commit: one fsync for many transitions). Only after that commit does anything
leave the process: callers are answered, custom actions and services run, subscribers
hear of the new state, timers are armed, and messages reach their receivers' queues.

Work reaches an instance's queue from the API (applied in the same transaction that
accepts it, so an accepted event is never lost), from durable inbox rows (messages
from other instances, recovery events), from the timer wheel, and from finished
services. A failed message or timer is retried with backoff while later work from
other senders proceeds; after ``MAX_ATTEMPTS`` it moves to the dead-letter list.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
import json
import logging
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from backstate.chart import (
    CancelEvent,
    EmitEvent,
    ExecutionError,
    LogMessage,
    RunAction,
    ScheduleEvent,
    SendEvent,
    Snapshot,
    StartActor,
    StopActor,
)
from backstate.store import (
    CommitResult,
    DeadLetterRow,
    EffectRow,
    HistoryRow,
    InboxRow,
    InstanceKey,
    InstanceRow,
    LogRow,
    RawJson,
    Store,
    StoreError,
    TimerRow,
    WriteBatch,
)
from backstate.store._protocol import ADOPT_CHANNEL, INBOX_CHANNEL, STATE_CHANNEL

from . import _logs
from ._clock import Clock
from ._cluster import Ownership, SoleOwner, shard_of
from ._deployments import (
    Persistent,
    Registry,
    Version,
    address,
    namespace_of,
    parse_ref,
    unqualified,
)
from ._entries import Entry, InstanceState, Round, Service, Work
from ._errors import (
    BackstateError,
    Conflict,
    EventRejected,
    Forbidden,
    InvalidRequest,
    NotFound,
    Unavailable,
)
from ._indexes import index_entries
from ._json import encode
from ._migrations import (
    UPGRADE_EVENT,
    MigrationFailed,
    NoMigrationPath,
    find_path,
    surviving_timer,
    upgrade_snapshot,
)
from ._stats import Stats
from ._timers import TimerWheel
from ._usercode import UserRaised, call, describe, user_code

logger = logging.getLogger("backstate.runtime")

MAX_CONTEXT_BYTES = 400_000
MAX_ATTEMPTS = 5
BATCH_PER_INSTANCE = 16
# Work that waits while an instance is paused or its sender is backing off; API calls
# and administration are answered at once.
_HELD_WHILE_PAUSED = ("inbox", "timer", "service")
CACHE_SIZE = 10_000
# How long the ids of applied inbox rows are remembered, so that a read of the inbox
# that began before they were deleted cannot queue them again (many nodes).
GONE_SECONDS = 60.0

current_effect_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "backstate_effect", default=None
)


class Processor:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        clock: Clock,
        step_timeout: float,
        ownership: Ownership | None = None,
    ) -> None:
        self.store = store
        self.ownership: Ownership = ownership or SoleOwner()
        self.queued_inbox: set[int] = set()  # inbox row ids in some queue here
        self.gone_inbox: dict[int, float] = {}  # applied inbox row id -> when (monotonic)
        self.foreign: set[InstanceKey] = set()  # created here, owned elsewhere: hand over
        self.registry = registry
        self.clock = clock
        self.step_timeout = step_timeout
        self.entries: OrderedDict[InstanceKey, Entry] = OrderedDict()
        self.ready: dict[InstanceKey, Entry] = {}
        self.wheel = TimerWheel()
        self.pending_done: list[str] = []
        self.pending_logs: list[LogRow] = []
        # Results of services run here for instances another node owns (see _service).
        self.pending_results: list[InboxRow] = []
        self.emit_listeners: list[Callable[[InstanceKey, dict[str, Any]], None]] = []
        self.waiting: set[Entry] = set()
        self.parked: list[tuple[InstanceKey, Work]] = []
        self.retries: list[tuple[int, int, InstanceKey]] = []
        self.uncommitted: dict[InstanceKey, int] = {}  # rounds not yet committed, per key
        self.cache_size = CACHE_SIZE  # instances kept in memory (idle ones are evicted)
        self._recovering: asyncio.Task[None] | None = None
        self._retry_seq = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.stats = Stats()
        clock.on_advance(self._wake.set)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self._recover()
        self._task = asyncio.create_task(self._supervise(), name="backstate-processor")

    async def _supervise(self) -> None:
        """Keep the loop running: if it dies of a bug, callers in flight get a 503
        instead of waiting forever, and state is reloaded from the store."""
        while True:
            try:
                await self._loop()
                return
            except Exception as exc:
                logger.exception("the processor failed; reloading state from the store")
                self._abandon([], StoreError(f"internal error: {type(exc).__name__}: {exc}"))
                if self._recovering is not None:
                    await self._recovering

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        for entry in self.entries.values():
            for service in entry.services.values():
                service.task.cancel()
            for future, handle in entry.waiters:
                handle.cancel()
                if not future.done():
                    future.set_exception(
                        Unavailable("shutting-down", "the runtime is shutting down")
                    )

    def refuse_waiting(self) -> None:
        """Shutting down: answer every caller still waiting (for an event's services
        to settle, or for work not yet applied, which is dropped) with 503
        ``shutting-down``, and take no new work. Durable work (messages, timers) stays
        for the next start."""
        self._closing = True
        error = Unavailable("shutting-down", "the server is shutting down")
        for entry in self.entries.values():
            for future, handle in entry.waiters:
                handle.cancel()
                if not future.done():
                    future.set_exception(error)
            entry.waiters = []
            for work in [w for w in entry.queue if w.future is not None]:
                entry.queue.remove(work)
                self._reject(work, error)
        self.waiting.clear()
        parked, self.parked = self.parked, []
        for key, work in parked:
            if work.future is None:
                self.parked.append((key, work))
            else:
                self._reject(work, error)
        self._wake.set()

    async def _recover(self, keep: Callable[[InstanceKey], bool] | None = None) -> None:
        """Effects that were started but never finished get an error event (they are
        not run again); then queued messages and timers are picked up. Only of the
        instances ``keep`` says (by default: those this process owns)."""
        keep = keep or self.ownership.owns
        now = self.clock.now_ms()
        batch = WriteBatch()
        finished = set(self.pending_done)
        for eff in await asyncio.to_thread(self.store.unfinished_effects):
            if eff.id in finished or not keep((eff.machine, eff.instance)):
                continue
            if eff.kind == "service" and not await asyncio.to_thread(self._child_running, eff):
                batch.effect_done.append(eff.id)  # its state was left; nobody awaits it
                continue
            error = {"name": "Interrupted", "message": "the process stopped while this effect ran"}
            if eff.kind == "service":
                event = {"type": f"xstate.error.actor.{eff.child}", "error": error}
            else:
                event = {
                    "type": "backstate.error.effect",
                    "effectId": eff.id,
                    "action": eff.name,
                    "error": error,
                }
            batch.inbox_inserts.append(
                InboxRow(0, eff.machine, eff.instance, event, "recovery", 0, 0, now)
            )
            batch.effect_done.append(eff.id)
        if batch:
            await asyncio.to_thread(self.store.commit, batch)
        for row in await asyncio.to_thread(self.store.pending_inbox):
            if row.id in self.queued_inbox or not keep((row.machine, row.instance)):
                continue
            work = Work(
                "inbox", row.event, sender=row.sender, inbox_id=row.id, attempts=row.attempts
            )
            if row.not_before > now and row.attempts:
                entry = self._entry((row.machine, row.instance))
                if entry is not None:
                    entry.blocked[row.sender] = max(
                        entry.blocked.get(row.sender, 0), row.not_before
                    )
            self._enqueue((row.machine, row.instance), work)
        for t in await asyncio.to_thread(self.store.pending_timers):
            if not keep((t.machine, t.instance)):
                continue
            self.wheel.add((t.machine, t.instance), t.key, t.due, t.event, t.to, t.attempts)
        self._wake.set()

    # -- ownership (many nodes, see _cluster) ------------------------------------------------

    async def claim(self, shards: set[int]) -> None:
        """Start running these shards: refresh what is cached of them, then recover."""
        for key, entry in list(self.entries.items()):
            if shard_of(key) in shards:
                row = await asyncio.to_thread(self.store.load_instance, key)
                if row is not None:
                    self._load(entry, row)
                    self._publish(entry, self.state(entry))
                elif not entry.subscribers:
                    self.entries.pop(key, None)
        await self._recover(lambda key: shard_of(key) in shards)

    def lose(self, shards: set[int]) -> None:
        """Stop running these shards at once: their callers get a 503 (to retry on the
        new owner); instances with subscribers stay, to follow the new owner's commits."""
        error = Unavailable("store-unavailable", "this node no longer runs that instance")
        for key, entry in list(self.entries.items()):
            if shard_of(key) not in shards:
                continue
            for work in entry.queue:
                if work.inbox_id is not None:
                    self.queued_inbox.discard(work.inbox_id)
                self._reject(work, error)
            entry.queue.clear()
            for future, handle in entry.waiters:
                handle.cancel()
                if not future.done():
                    future.set_exception(error)
            entry.waiters = []
            self.waiting.discard(entry)
            for service in entry.services.values():
                service.task.cancel()
            entry.services.clear()
            entry.starting.clear()
            entry.blocked.clear()
            self.ready.pop(key, None)
            if not entry.subscribers and key not in self.uncommitted:
                del self.entries[key]
        self.wheel.forget_where(lambda key: shard_of(key) in shards)
        parked, self.parked = self.parked, []
        for key, work in parked:
            if shard_of(key) in shards:
                self._reject(work, error)
            else:
                self.parked.append((key, work))

    def load_inbox(self, rows: list[InboxRow]) -> None:
        """Queue inbox rows (in delivery order) of instances this node owns, each once."""
        now = time.monotonic()
        if len(self.gone_inbox) > 10_000 or (
            self.gone_inbox and next(iter(self.gone_inbox.values())) < now - GONE_SECONDS
        ):
            self.gone_inbox = {i: t for i, t in self.gone_inbox.items() if t > now - GONE_SECONDS}
        for row in rows:
            key = (row.machine, row.instance)
            if (
                row.id in self.queued_inbox
                or row.id in self.gone_inbox
                or not self.ownership.owns(key)
            ):
                continue
            work = Work(
                "inbox", row.event, sender=row.sender, inbox_id=row.id, attempts=row.attempts
            )
            if row.not_before > self.clock.now_ms() and row.attempts:
                entry = self._entry(key)
                if entry is not None:
                    entry.blocked[row.sender] = max(
                        entry.blocked.get(row.sender, 0), row.not_before
                    )
                    self._retry_later(entry, row.not_before)
            self._enqueue(key, work)

    async def adopt(self, key: InstanceKey, timers: list[TimerRow]) -> None:
        """An instance another node created in this node's shard: run its timers."""
        for t in timers:
            if not self.wheel.has(key, t.key):
                self.wheel.add(key, t.key, t.due, t.event, t.to, t.attempts)
        self._wake.set()

    def observes(self, key: InstanceKey, seq: int) -> bool:
        """Whether a commit of ``key`` by another node concerns a subscriber here."""
        entry = self.entries.get(key)
        return entry is not None and bool(entry.subscribers) and seq > entry.seq

    async def refresh(self, key: InstanceKey) -> None:
        """Reload an instance another node runs and tell its subscribers here."""
        row = await asyncio.to_thread(self.store.load_instance, key)
        entry = self.entries.get(key)
        if row is None or entry is None or self.ownership.owns(key) or row.seq <= entry.seq:
            return
        try:
            self._load(entry, row)
        except NotFound:
            return  # a version deployed on another node only
        self._publish(entry, self.state(entry))

    def _child_running(self, eff: EffectRow) -> bool:
        row = self.store.load_instance((eff.machine, eff.instance))
        children = (row.snapshot.get("children") or {}) if row is not None else {}
        return eff.child in children

    # -- entry points ---------------------------------------------------------------------

    def submit(self, key: InstanceKey, work: Work) -> None:
        if self._closing:
            raise Unavailable("shutting-down", "the runtime is shutting down")
        if not self.ownership.owns(key):
            raise Unavailable(
                "store-unavailable", f"{key[0]}/{key[1]} is run by another node; retry"
            )
        self._enqueue(key, work, create=work.kind == "create")

    def _enqueue(self, key: InstanceKey, work: Work, create: bool = False) -> None:
        # A message may arrive before its receiver exists: it waits (and retries) in a
        # placeholder entry rather than being dropped.
        try:
            entry = self._entry(key, create=create or work.kind == "inbox")
        except NotFound as exc:
            if work.future is not None:
                self._reject(work, exc)
            else:
                # Its machine version is not deployed (yet): keep the work for deploy().
                self.parked.append((key, work))
            return
        if entry is None:
            self._reject(work, NotFound("instance-not-found", f"no instance {key[0]}/{key[1]}"))
            return
        if work.inbox_id is not None:
            self.queued_inbox.add(work.inbox_id)
        entry.queue.append(work)
        self.ready[key] = entry
        self._wake.set()

    def deployed(self, machine: str) -> None:
        """Work that waited for ``machine`` to be deployed can run now."""
        parked, self.parked = self.parked, []
        for key, work in parked:
            if key[0] == machine:
                self._enqueue(key, work)
            else:
                self.parked.append((key, work))

    def _entry(self, key: InstanceKey, create: bool = False) -> Entry | None:
        entry = self.entries.get(key)
        if entry is not None:
            self.entries.move_to_end(key)
            return entry
        try:
            row = self.store.load_instance(key)
        except StoreError as exc:
            raise Unavailable("store-unavailable", f"the store failed: {exc}") from exc
        return self._cache(key, row, create)

    def _cache(self, key: InstanceKey, row: InstanceRow | None, create: bool) -> Entry | None:
        if row is None and not create:
            return None
        entry = Entry(key)
        if row is not None:
            self._load(entry, row)
        self._evict(self.cache_size - 1)
        self.entries[key] = entry
        return entry

    def _load(self, entry: Entry, row: InstanceRow) -> None:
        version = self.registry.get(row.machine, row.version)
        entry.exists = True
        entry.version = row.version
        entry.seq = row.seq
        entry.snapshot = version.machine.resolve_snapshot(row.snapshot)
        entry.paused = row.status == "paused"
        entry.parent = row.parent
        entry.children = dict(row.children)
        entry.created_at = row.created_at
        entry.updated_at = row.updated_at
        entry.desired = row.desired_version
        entry.committed = self.state(entry)

    def _evict(self, limit: int | None = None) -> None:
        """Forget the least recently used idle instances beyond ``limit``; never one
        whose changes are not committed yet (reloading it would read an older state)."""
        limit = self.cache_size if limit is None else limit
        while len(self.entries) > limit:
            for key, entry in self.entries.items():
                if entry.idle and key not in self.ready and key not in self.uncommitted:
                    del self.entries[key]
                    break
            else:
                return

    def state(self, entry: Entry) -> InstanceState:
        snap = entry.snapshot
        assert snap is not None
        return InstanceState(
            entry.key[0],
            entry.key[1],
            entry.version,
            entry.seq,
            snap.value,
            snap.context,
            snap.status,
            entry.paused,
            snap.tags,
            snap,
            entry.updated_at,
            entry.created_at,
            entry.desired,
        )

    async def get(self, key: InstanceKey) -> InstanceState:
        """The committed state; an instance not in memory is read off the event loop."""
        entry = self.entries.get(key)
        if entry is None or not self.ownership.owns(key):
            try:
                row = await asyncio.to_thread(self.store.load_instance, key)
            except StoreError as exc:
                raise Unavailable("store-unavailable", f"the store failed: {exc}") from exc
            if not self.ownership.owns(key):
                # Another node runs it: its latest commit is in the store.
                if row is None:
                    raise NotFound("instance-not-found", f"no instance {key[0]}/{key[1]}")
                entry = Entry(key)
                self._load(entry, row)
                assert entry.committed is not None
                return entry.committed
            # Loaded meanwhile for work: that entry is the newer one.
            entry = self.entries.get(key) or self._cache(key, row, create=False)
        else:
            self.entries.move_to_end(key)
        if entry is None or entry.committed is None:
            raise NotFound("instance-not-found", f"no instance {key[0]}/{key[1]}")
        return entry.committed

    # -- the loop -------------------------------------------------------------------------

    async def _loop(self) -> None:
        """Build a round while the previous one commits (pipelining): a round's
        effects still happen only after its own commit, and commits stay in order."""
        pending: tuple[Round, asyncio.Task[CommitResult]] | None = None
        while True:
            if (
                not self.ready
                and not self._closing
                and not self.pending_done
                and not self.pending_logs
            ):
                await self._idle(pending[1] if pending else None)
            self._wake.clear()
            self._fire_timers()
            self._due_retries(self.clock.now_ms())
            rnd = Round()
            for entry in list(self.ready.values()):
                self.ready.pop(entry.key, None)
                self._process(entry, rnd)
            self._seal(rnd)
            if pending is not None:
                done, pending = pending, None
                try:
                    result = await done[1]
                except StoreError as exc:
                    self.stats.commit_failures += 1
                    logger.error("commit failed, reloading state from the store: %s", exc)
                    self._abandon([done[0], rnd], exc)
                    continue
                self._finish(done[0], result)
            if rnd.batch:
                pending = (
                    rnd,
                    asyncio.ensure_future(asyncio.to_thread(self._commit, rnd.batch)),
                )
                continue
            if rnd.after or rnd.settle:
                # Nothing to write, yet callers to answer (a duplicate create, answered
                # once the first is committed): every earlier round is finished by now.
                self._finish(rnd, CommitResult([]))
            if self._closing and not self.ready:
                return

    def _commit(self, batch: WriteBatch) -> CommitResult:
        started = time.perf_counter()
        try:
            return self.store.commit(batch)
        finally:
            self.stats.commit_seconds += time.perf_counter() - started

    async def _idle(self, commit: asyncio.Task[CommitResult] | None) -> None:
        """Wait for work, the next due timer or retry, or the commit in flight."""
        due = self.wheel.next_due()
        if self.retries and (due is None or self.retries[0][0] < due):
            due = self.retries[0][0]
        timeout = None if due is None else self.clock.seconds_until(due)
        if commit is not None:
            timeout = 0 if commit.done() else timeout
            woken = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait(
                [commit, woken], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            woken.cancel()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    def _fire_timers(self) -> None:
        for due in self.wheel.pop_due(self.clock.now_ms()):
            if not self.ownership.owns(due.key):
                self.wheel.cancel(due.key, due.timer)  # its owner fires it
                continue
            self._enqueue(
                due.key, Work("timer", due.event, sender="timer", due=due, attempts=due.attempts)
            )

    def _seal(self, rnd: Round) -> None:
        batch = rnd.batch
        batch.effect_done.extend(self.pending_done)
        batch.logs.extend(self.pending_logs)
        for result in self.pending_results:
            batch.inbox_inserts.append(result)
            rnd.deliveries.append(((result.machine, result.instance), Work("inbox", result.event)))
        self.pending_done, self.pending_logs, self.pending_results = [], [], []
        for key, (expected, row) in rnd.updates.items():
            self.uncommitted[key] = self.uncommitted.get(key, 0) + 1
            if expected is None:
                batch.instance_creates.append(row)
            else:
                batch.instance_updates.append((key, expected, row))
        if self.ownership.node is not None and batch:
            self._announce(rnd)

    def _announce(self, rnd: Round) -> None:
        """Many nodes: fence the batch with the leases of the instances it changes, and
        tell other nodes about its messages and states."""
        batch, owns = rnd.batch, self.ownership.owns
        keys = {k for k, (expected, _) in rnd.updates.items() if expected is not None or owns(k)}
        keys.update(k for k, _ in batch.status_updates)
        keys.update(k for k, _ in batch.desired_updates)
        keys.update(batch.instance_deletes)
        keys.update(
            op[0] if isinstance(op, tuple) else (op.machine, op.instance) for op in batch.timer_ops
        )
        if keys:
            assert self.ownership.node is not None
            batch.fence = (self.ownership.node, sorted({shard_of(k) for k in keys}))
        notices = batch.notices
        for m in batch.inbox_inserts:
            if not owns((m.machine, m.instance)):
                notices.append((INBOX_CHANNEL, f"{m.machine}/{m.instance}"))
        for key, (expected, row) in rnd.updates.items():
            notices.append((STATE_CHANNEL, f"{key[0]}/{key[1]}/{row.seq}"))
            if expected is None and not owns(key):
                notices.append((ADOPT_CHANNEL, f"{key[0]}/{key[1]}"))
                self.foreign.add(key)

    def _finish(self, rnd: Round, result: CommitResult) -> None:
        """The round is durable: let its consequences out."""
        if rnd.batch:
            self.stats.commits += 1
            self.stats.transitions += len(rnd.batch.history)
        for key in rnd.updates:
            left = self.uncommitted.pop(key, 1) - 1
            if left:
                self.uncommitted[key] = left
        now = time.monotonic()
        for inbox_id in rnd.batch.inbox_deletes:
            self.queued_inbox.discard(inbox_id)
            self.gone_inbox[inbox_id] = now
        for (key, work), inbox_id in zip(rnd.deliveries, result.inbox_ids, strict=True):
            # Another node's receiver hears of it (NOTIFY); a sweep may have been first.
            if inbox_id in self.queued_inbox or not self.ownership.owns(key):
                continue
            work.inbox_id = inbox_id
            self._enqueue(key, work)
        for action in rnd.after:
            action()
        if self.foreign:
            self._hand_over()
        for entry, future, state in rnd.settle:
            if state is not None:
                _resolve(future, state)
            else:
                self._await_settle(entry, future)
        for entry in [e for e in self.waiting if self._settled(e)]:
            self._release(entry)
        self._evict()

    def _hand_over(self) -> None:
        """Forget instances created here for another node once nothing runs them here
        (their services done); their owner took over their timers and messages."""
        for key in list(self.foreign):
            entry = self.entries.get(key)
            if entry is None:
                self.foreign.discard(key)
            elif (
                not entry.queue
                and not entry.services
                and not entry.starting
                and key not in self.ready
                and key not in self.uncommitted
            ):
                self.foreign.discard(key)
                self.wheel.forget_instance(key)
                if not entry.subscribers and not entry.waiters:
                    del self.entries[key]

    def _abandon(self, rounds: list[Round], exc: StoreError) -> None:
        """A failed commit wrote nothing (and the round built on it is dropped too):
        forget in-memory state and answer callers."""
        error = Unavailable("store-unavailable", f"the store failed: {exc}")
        futures = [f for rnd in rounds for _, f, _ in rnd.settle]
        futures.extend(f for rnd in rounds for f in rnd.deferred)
        for entry in self.entries.values():
            futures.extend(w.future for w in entry.queue if w.future is not None)
            futures.extend(f for f, _ in entry.waiters)
            for service in entry.services.values():
                service.task.cancel()
        for future in futures:
            if not future.done():
                future.set_exception(error)
        self.entries.clear()
        self.queued_inbox.clear()
        self.foreign.clear()
        self.uncommitted.clear()
        self.ready.clear()
        self.waiting.clear()
        self.retries.clear()
        self.wheel = TimerWheel()
        self._recovering = asyncio.get_running_loop().create_task(self._recover_when_possible())

    async def _recover_when_possible(self) -> None:
        delay = 0.05
        while not self._closing:
            try:
                await self._recover()
                return
            except (StoreError, Unavailable) as exc:
                logger.warning("store still failing (%s); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # -- processing one instance ------------------------------------------------------------

    def _process(self, entry: Entry, rnd: Round) -> None:
        now = self.clock.now_ms()
        handled = 0
        skipped: list[Work] = []
        held: set[str] = set()  # senders with held work: their later work waits too
        while entry.queue and handled < BATCH_PER_INSTANCE:
            work = entry.queue.popleft()
            if work.kind in _HELD_WHILE_PAUSED and (
                entry.paused or work.sender in held or entry.blocked.get(work.sender, 0) > now
            ):
                held.add(work.sender)
                skipped.append(work)
                continue
            handled += 1
            self.stats.handled[work.kind] += 1
            try:
                self._handle(entry, work, rnd, now)
            except BackstateError as exc:
                self.stats.refused[exc.code] += 1
                self._failed(entry, work, exc, rnd, now)
            if work.kind == "resume" and skipped:
                break  # what was held runs first, in order, in the next round
        entry.queue.extendleft(reversed(skipped))
        if entry.queue and (
            handled == BATCH_PER_INSTANCE or (skipped and not entry.paused and not entry.blocked)
        ):
            self.ready[entry.key] = entry
        elif skipped and not entry.paused:
            retry = min(entry.blocked.get(w.sender, now) for w in skipped)
            self._retry_later(entry, retry)

    def _retry_later(self, entry: Entry, at_ms: int) -> None:
        heapq.heappush(self.retries, (at_ms, next(self._retry_seq), entry.key))

    def _due_retries(self, now: int) -> None:
        while self.retries and self.retries[0][0] <= now:
            _, _, key = heapq.heappop(self.retries)
            entry = self.entries.get(key)
            if entry is not None and entry.queue:
                self.ready[key] = entry

    def _handle(self, entry: Entry, work: Work, rnd: Round, now: int) -> None:
        if work.kind == "create":
            self._create(entry, work, rnd, now)
            return
        if not entry.exists:
            raise NotFound("instance-not-found", f"no instance {entry.key[0]}/{entry.key[1]}")
        if work.kind in ("pause", "resume", "delete"):
            self._administer(entry, work, rnd)
            return
        if work.kind == "desire":
            self._desire(entry, work, rnd, now)
            return
        if entry.desired is not None and entry.settled and work.kind in ("api", "inbox", "timer"):
            self._upgrade(entry, rnd, now)
        if work.kind == "api" and entry.paused:
            raise Conflict("invalid-state", f"{entry.key[0]}/{entry.key[1]} is paused")
        if work.kind == "timer":
            assert work.due is not None
            if not self.wheel.is_current(work.due):
                return
            self.wheel.cancel(entry.key, work.due.timer)
            # Its row goes before anything the transition writes: a transition that
            # re-arms the same timer id writes the new row after this deletion.
            rnd.batch.timer_ops.append((entry.key, work.due.timer))
            if work.due.to != "#_self":
                self._send(entry, work.due.to, work.event, rnd, now)
                return
        relayed = work.kind == "inbox" and work.sender == "service"
        if (work.kind == "service" or relayed) and self._stale_result(entry, work):
            if relayed and work.inbox_id is not None:
                rnd.batch.inbox_deletes.append(work.inbox_id)
            elif work.effect_id:
                rnd.batch.effect_done.append(work.effect_id)
            return
        version = self.registry.get(entry.key[0], entry.version)
        if work.auth is not None or (
            work.kind == "inbox" and work.sender not in ("self", "recovery", "service")
        ):
            self._authorize(entry, version, work, "event")
        self._transition(entry, version, work.event, rnd, now, work.event_json)
        if work.kind == "inbox" and work.inbox_id is not None:
            rnd.batch.inbox_deletes.append(work.inbox_id)
        elif work.kind == "service":
            rnd.batch.effect_done.append(work.effect_id or "")
            child = work.event["type"].split(".", 3)[3]
            token = work.token
            rnd.after.append(lambda: self._forget_service(entry, child, token))
        if work.future is not None:
            self._answer(entry, work.future, rnd)

    def _stale_result(self, entry: Entry, work: Work) -> bool:
        """Whether a service's result no longer concerns the instance: it has left that
        invocation, or started another one with the same id since (a result from here
        carries its service's token; one relayed by the node that created the instance,
        see _service, meets a service of this node's own)."""
        child = work.event["type"].split(".", 3)[3]
        snap = entry.snapshot
        if snap is None or child not in snap.children:
            return True
        if work.kind == "service":
            service = entry.services.get(child)
            return service is None or service.token is not work.token
        return child in entry.services or child in entry.starting

    def _administer(self, entry: Entry, work: Work, rnd: Round) -> None:
        key = entry.key
        if work.kind == "delete":
            rnd.batch.instance_deletes.append(key)
            entry.exists = False
            rnd.after.append(lambda: self._forget_instance(entry))
        else:
            entry.paused = work.kind == "pause"
            rnd.batch.status_updates.append((key, "paused" if entry.paused else "running"))
            if not entry.paused:
                entry.blocked.clear()
                rnd.after.append(lambda: self._requeue(entry))
        future = work.future
        if future is not None:
            state = self.state(entry)
            rnd.after.append(lambda: _resolve(future, state))
        if work.kind != "delete":
            rnd.after.append(lambda: self._publish(entry, self.state(entry)))

    # -- upgrades and indexes ---------------------------------------------------------------

    def _desire(self, entry: Entry, work: Work, rnd: Round, now: int) -> None:
        """Record the version an instance upgrades to at its next settled event (or at
        once, if asked and settled). Refused unless migrations lead there."""
        target = (work.create or {})["version"]
        self.registry.get(entry.key[0], target)
        find_path(self.registry.migrations(entry.key[0]), entry.version, target)
        entry.desired = None if target == entry.version else target
        rnd.batch.desired_updates.append((entry.key, entry.desired))
        if (work.create or {}).get("now") and entry.desired is not None and entry.settled:
            failure = self._upgrade(entry, rnd, now)
            if failure is not None:
                raise failure  # logged and cleared in this round, and answered
        if work.future is not None:
            self._answer(entry, work.future, rnd)
        state = self.state(entry)
        rnd.after.append(lambda: self._publish(entry, state))

    def _upgrade(self, entry: Entry, rnd: Round, now: int) -> BackstateError | None:
        """Migrate the instance to its desired version, recorded as a transition. If the
        migration fails, the instance stays as it was, the failure is logged and
        returned."""
        key, source_id, target_id = entry.key, entry.version, entry.desired
        assert target_id is not None and entry.snapshot is not None
        source = self.registry.get(key[0], source_id)
        entry.desired = None
        try:
            target = self.registry.get(key[0], target_id)
            chain = find_path(self.registry.migrations(key[0]), source_id, target_id)
            with (
                self._user_code(entry, target),
                user_code(
                    "a migration", self._where(entry, target), "migration-failed", MigrationFailed
                ),
            ):
                data = upgrade_snapshot(
                    entry.snapshot.to_json(), chain, source.machine, target.machine
                )
            snap = target.machine.resolve_snapshot(data)
        except (MigrationFailed, NoMigrationPath, NotFound) as exc:
            rnd.batch.desired_updates.append((key, None))
            rnd.batch.logs.append(
                LogRow(
                    now,
                    key[0],
                    source_id,
                    key[1],
                    "error",
                    f"upgrade from {source_id} to {target_id} failed; the instance stays on "
                    f"{source_id}: {exc.message}",
                )
            )
            return exc
        active = set(snap.active_ids)
        for due in self.wheel.timers_of(key):
            if not surviving_timer(due.event.get("type", ""), active):
                rnd.batch.timer_ops.append((key, due.timer))
                self.wheel.cancel(key, due.timer)
        entry.version = target_id
        entry.indexed = None  # the target's selectors may differ: rewrite the entries
        event = {
            "type": UPGRADE_EVENT,
            "fromMachineVersionId": source_id,
            "toMachineVersionId": target_id,
            "migrationPath": [m.id for m in chain],
        }
        self._commit_transition(entry, target, event, snap, [], rnd, now)
        if entry.indexed is None:  # the target indexes nothing: drop the source's entries
            entry.indexed = frozenset()
            rnd.batch.index_puts.append((key, entry.indexed))
        return None

    def _index(self, entry: Entry, version: Version, snap: Snapshot, rnd: Round, now: int) -> None:
        """Rewrite the instance's index entries, in this transition's commit, if they
        changed; values that cannot be indexed are skipped and logged."""
        entries, skipped = index_entries(version.indexes, snap.context, snap.state_strings)
        if entries == entry.indexed:
            return
        entry.indexed = entries
        rnd.batch.index_puts.append((entry.key, entries))
        for message in skipped:
            rnd.batch.logs.append(
                LogRow(now, entry.key[0], version.id, entry.key[1], "warning", message)
            )

    def _forget_instance(self, entry: Entry) -> None:
        key = entry.key
        for service in entry.services.values():
            service.task.cancel()
        entry.services.clear()
        for work in entry.queue:
            self._reject(work, NotFound("instance-not-found", f"{key[0]}/{key[1]} was deleted"))
        entry.queue.clear()
        self.wheel.forget_instance(key)
        if self.entries.get(key) is entry:
            del self.entries[key]
        self.ready.pop(key, None)

    def _requeue(self, entry: Entry) -> None:
        if entry.queue and self.entries.get(entry.key) is entry:
            self.ready[entry.key] = entry
            self._wake.set()

    def _failed(self, entry: Entry, work: Work, exc: BackstateError, rnd: Round, now: int) -> None:
        if work.future is not None:
            self._reject(work, exc)
            return
        if (
            isinstance(exc, NotFound)
            and exc.code == "instance-not-found"
            and work.kind in ("timer", "service")
        ):
            return
        attempts = work.attempts + 1
        if attempts < MAX_ATTEMPTS and (work.kind == "inbox" or not isinstance(exc, NotFound)):
            retry_at = now + 1000 * 2 ** (attempts - 1)
            if work.kind == "inbox" and work.inbox_id is not None:
                rnd.batch.inbox_retries.append((work.inbox_id, attempts, retry_at))
            elif work.kind == "timer" and work.due is not None:
                d = work.due
                rnd.batch.timer_ops.append(
                    TimerRow(entry.key[0], entry.key[1], d.timer, d.event, retry_at, d.to, attempts)
                )
                self.wheel.add(entry.key, d.timer, retry_at, d.event, d.to, attempts)
                return
            work.attempts = attempts
            entry.blocked[work.sender] = retry_at
            entry.queue.appendleft(work)
            self._retry_later(entry, retry_at)
            logger.warning("%s/%s: %s (attempt %d, retrying)", *entry.key, exc.message, attempts)
            return
        rnd.batch.dead_letters.append(
            DeadLetterRow(
                0,
                entry.key[0],
                entry.key[1],
                work.event,
                work.sender,
                f"{exc.code}: {exc.message}",
                attempts,
                now,
            )
        )
        if work.kind == "inbox" and work.inbox_id is not None:
            rnd.batch.inbox_deletes.append(work.inbox_id)
        elif work.kind == "timer" and work.due is not None:
            rnd.batch.timer_ops.append((entry.key, work.due.timer))
        elif work.kind == "service" and work.effect_id:
            rnd.batch.effect_done.append(work.effect_id)
        entry.blocked.pop(work.sender, None)
        logger.error(
            "%s/%s: %s after %d attempts; moved to dead letters", *entry.key, exc.message, attempts
        )

    def log(self, row: LogRow) -> None:
        """Keep a log line of user code run outside a round (it goes into the next)."""
        self.pending_logs.append(row)
        self._wake.set()

    def _where(self, entry: Entry, version: Version) -> str:
        return f"{entry.key[0]}@{version.id}/{entry.key[1]}"

    def _user_code(self, entry: Entry, version: Version) -> _logs.scope:
        """Where print() and logging of this instance's user code go."""
        return _logs.scope(
            (entry.key[0], version.id, entry.key[1]), self.pending_logs.append, self.clock.now_ms
        )

    def _reject(self, work: Work, exc: BackstateError) -> None:
        if work.future is not None and not work.future.done():
            work.future.set_exception(exc)

    def _authorize(self, entry: Entry, version: Version, work: Work, write_type: str) -> None:
        check = version.allow_write
        if check is None:
            return
        auth = work.auth
        if auth is None and work.kind == "inbox":
            machine, _, name = work.sender.partition("/")
            sender = {"machineName": unqualified(machine), "machineInstanceName": name}
            namespace = namespace_of(machine)
            if namespace is not None:
                sender["orgId"] = namespace  # always the receiver's own (see address)
            auth = {"stateBackedSender": sender}
        snap = entry.snapshot
        where = self._where(entry, version)
        with (
            self._user_code(entry, version),
            user_code("allow_write", where, "authorizer-failed", Forbidden),
        ):
            allowed = check(
                machine_instance_name=entry.key[1],
                auth_context=auth or {},
                context=work.create.get("context")
                if work.create
                else (snap.context if snap else None),
                state=snap.value if snap else None,
                event=work.event if write_type == "event" else None,
                write_type=write_type,
            )
        if not allowed:
            raise Forbidden(
                "rejected-by-machine-authorizer",
                f"{entry.key[0]}/{entry.key[1]} refused this {write_type}",
            )

    # -- transitions -----------------------------------------------------------------------

    def _create(self, entry: Entry, work: Work, rnd: Round, now: int) -> None:
        if entry.exists:
            exc = Conflict(
                "instance-exists", f"instance {entry.key[0]}/{entry.key[1]} already exists"
            )
            if entry.committed is None:
                # Its creation is not committed yet: answer once it is, so a caller that
                # reads it next (State Backed's get-or-create) finds it.
                rnd.after.append(lambda: self._reject(work, exc))
                if work.future is not None:
                    rnd.deferred.append(work.future)
                return
            raise exc
        opts = work.create or {}
        version = self.registry.get(entry.key[0], opts.get("version"))
        if work.auth is not None:
            self._authorize(entry, version, work, "initialization")
        entry.version = version.id
        entry.parent = opts.get("parent")
        entry.created_at = now
        with self._user_code(entry, version):
            try:
                with user_code(
                    "the initial transition",
                    self._where(entry, version),
                    "event-rejected",
                    EventRejected,
                ):
                    snap, effects = version.machine.initial_transition(
                        opts.get("input"),
                        **({"context": opts["context"]} if opts.get("context") is not None else {}),
                    )
            except ExecutionError as exc:
                raise EventRejected(
                    "event-rejected",
                    f"creating {entry.key[0]}/{entry.key[1]} failed: {exc.message}",
                ) from exc
        self._commit_transition(
            entry,
            version,
            {"type": "xstate.init", "input": opts.get("input")},
            snap,
            effects,
            rnd,
            now,
            created=True,
        )
        if work.future is not None:
            self._answer(entry, work.future, rnd)

    def _transition(
        self,
        entry: Entry,
        version: Version,
        event: dict[str, Any],
        rnd: Round,
        now: int,
        event_json: RawJson | None = None,
    ) -> None:
        with self._user_code(entry, version):
            try:
                with user_code(
                    f"the transition on {event.get('type')!r}",
                    self._where(entry, version),
                    "event-rejected",
                    EventRejected,
                ):
                    snap, effects = version.machine.transition(entry.snapshot, event)  # type: ignore[arg-type]
            except ExecutionError as exc:
                raise EventRejected(
                    "event-rejected",
                    f"{entry.key[0]}/{entry.key[1]} rejected {event.get('type')!r}: {exc.message}",
                ) from exc
        self._commit_transition(
            entry, version, event, snap, effects, rnd, now, event_json=event_json
        )

    def _commit_transition(
        self,
        entry: Entry,
        version: Version,
        event: dict[str, Any],
        snap: Snapshot,
        effects: list[Any],
        rnd: Round,
        now: int,
        created: bool = False,
        event_json: RawJson | None = None,
    ) -> None:
        data = snap.to_json()
        text = RawJson(encode(data, "the context"))
        event_text = event_json or RawJson(encode(event, "the event"))
        # A snapshot is never shorter than its context: the exact context size is
        # needed only for large snapshots.
        size = (
            len(encode(data["context"], "the context").encode())
            if len(text) > MAX_CONTEXT_BYTES
            else 0
        )
        if size > MAX_CONTEXT_BYTES:
            raise InvalidRequest(
                "context-too-large",
                f"context would be {size} bytes of JSON; the limit is {MAX_CONTEXT_BYTES}",
            )
        seq = 0 if created else entry.seq + 1
        expected = None if created else entry.seq
        entry.exists = True
        entry.seq = seq
        entry.snapshot = snap
        entry.updated_at = now
        key = entry.key
        prefix = f"{key[0]}/{key[1]}/{seq}"
        for index, effect in enumerate(effects):
            self._effect(entry, version, effect, f"{prefix}/{index}", rnd, now)
        if snap.status in ("done", "error") and entry.parent is not None:
            self._report_to_parent(entry, snap, rnd, now)
        previous = rnd.updates.get(key)
        if previous is not None:
            expected = previous[0]
        rnd.updates[key] = (
            expected,
            InstanceRow(
                key[0],
                key[1],
                entry.version,
                seq,
                text,
                "paused" if entry.paused else "running",
                entry.parent,
                entry.created_at,
                now,
                dict(entry.children),
                entry.desired,
            ),
        )
        rnd.batch.history.append((key, HistoryRow(seq, event_text, text, now)))
        if version.indexes or entry.indexed:
            self._index(entry, version, snap, rnd, now)
        state = self.state(entry)
        rnd.after.append(lambda: self._publish(entry, state))

    def _effect(
        self, entry: Entry, version: Version, effect: Any, effect_id: str, rnd: Round, now: int
    ) -> None:
        key = entry.key
        if isinstance(effect, RunAction):
            rnd.batch.effect_inserts.append(
                EffectRow(effect_id, key[0], key[1], "action", effect.name, None)
            )
            rnd.after.append(lambda: self._run_action(entry, version, effect, effect_id))
        elif isinstance(effect, ScheduleEvent):
            timer = effect.id if effect.id is not None else f"auto:{effect_id}"
            due = now + effect.delay_ms
            rnd.batch.timer_ops.append(
                TimerRow(key[0], key[1], timer, effect.event, due, effect.to, 0)
            )
            # The wheel is in-memory state like the snapshot: it changes at once, so a
            # later event of this batch sees the timer replaced (a failed commit resets it).
            self.wheel.add(key, timer, due, effect.event, effect.to)
        elif isinstance(effect, CancelEvent):
            rnd.batch.timer_ops.append((key, effect.id))
            self.wheel.cancel(key, effect.id)
        elif isinstance(effect, SendEvent):
            self._send(entry, effect.to, effect.event, rnd, now)
        elif isinstance(effect, StartActor):
            self._start_actor(entry, version, effect, effect_id, rnd, now)
        elif isinstance(effect, StopActor):
            entry.children.pop(effect.id, None)
            # Stopped now, so a result it already queued is dropped even in this batch,
            # and finished in the same commit as the transition that stopped it.
            unstarted = entry.starting.pop(effect.id, None)
            if unstarted is not None:
                rnd.batch.effect_done.append(unstarted)
            stopped = entry.services.pop(effect.id, None)
            if stopped is not None:
                rnd.batch.effect_done.append(stopped.effect_id)
                task = stopped.task
                rnd.after.append(lambda: _cancel(task))
        elif isinstance(effect, EmitEvent):
            rnd.after.append(lambda: self._emit(key, effect.event))
        elif isinstance(effect, LogMessage):
            message = (
                effect.value
                if isinstance(effect.value, str)
                else json.dumps(effect.value, default=str)
            )
            label = f"{effect.label}: " if effect.label else ""
            rnd.batch.logs.append(LogRow(now, key[0], version.id, key[1], "info", label + message))

    def _send(self, entry: Entry, to: str, event: dict[str, Any], rnd: Round, now: int) -> None:
        sender = f"{entry.key[0]}/{entry.key[1]}"
        target: InstanceKey | None
        if to == "#_self":
            target, sender = entry.key, "self"
            rnd.self_sent.add(entry.key)
        elif to == "#_parent":
            target = entry.parent
        else:
            target = entry.children.get(to)
            ref = parse_ref(to) if target is None else None
            if ref is not None:
                try:
                    target = address(ref[0], ref[1], entry.key[0])
                except InvalidRequest as exc:
                    self._refuse_effect(entry, f"send_to({to!r})", exc, rnd, now)
                    return
        if target is None:
            rnd.batch.dead_letters.append(
                DeadLetterRow(
                    0, entry.key[0], entry.key[1], event, sender, f"unknown-target: {to!r}", 0, now
                )
            )
            return
        rnd.batch.inbox_inserts.append(InboxRow(0, target[0], target[1], event, sender, 1, 0, now))
        rnd.deliveries.append((target, Work("inbox", event, sender=sender)))

    def _report_to_parent(self, entry: Entry, snap: Snapshot, rnd: Round, now: int) -> None:
        parent = self._entry(entry.parent) if entry.parent else None
        child_id = next(
            (cid for cid, k in (parent.children.items() if parent else []) if k == entry.key), None
        )
        if child_id is None:
            return
        if snap.status == "done":
            event = {"type": f"xstate.done.actor.{child_id}", "output": snap.output}
        else:
            event = {"type": f"xstate.error.actor.{child_id}", "error": snap.error}
        self._send(entry, "#_parent", event, rnd, now)

    def _start_actor(
        self,
        entry: Entry,
        version: Version,
        effect: StartActor,
        effect_id: str,
        rnd: Round,
        now: int,
    ) -> None:
        logic = effect.logic
        if isinstance(logic, Persistent):
            try:
                with (
                    self._user_code(entry, version),
                    user_code(
                        f"the name of persistent({logic.machine!r})",
                        self._where(entry, version),
                        "invalid-address",
                        InvalidRequest,
                    ),
                ):
                    name = logic.name_for(entry.key[1], effect.id, effect.input)
                child_key = address(logic.machine, name, entry.key[0])
            except InvalidRequest as exc:
                self._refuse_effect(entry, f"persistent({logic.machine!r})", exc, rnd, now)
                self._actor_failed(entry, effect.id, exc.code, exc.message, rnd, now)
                return
            entry.children[effect.id] = child_key
            child = self._entry(child_key, create=True)
            assert child is not None
            if child.exists or child_key in rnd.updates:
                return
            work = Work(
                "create",
                {},
                sender=f"{entry.key[0]}/{entry.key[1]}",
                create={"input": effect.input, "parent": entry.key},
            )
            try:
                self._create(child, work, rnd, now)
            except BackstateError as exc:
                self._actor_failed(entry, effect.id, exc.code, exc.message, rnd, now)
            return
        if not callable(logic):
            message = f"actor {effect.src!r} cannot run in the durable runtime"
            self._actor_failed(entry, effect.id, "unsupported-actor", message, rnd, now)
            return
        rnd.batch.effect_inserts.append(
            EffectRow(effect_id, entry.key[0], entry.key[1], "service", effect.src, effect.id)
        )
        entry.starting[effect.id] = effect_id
        rnd.after.append(lambda: self._start_service(entry, version, effect, effect_id))

    def _refuse_effect(
        self, entry: Entry, what: str, exc: BackstateError, rnd: Round, now: int
    ) -> None:
        """An effect that must not happen (an address outside the sender's org, an
        invalid one) is dropped where it was produced, with a line in the sender's logs."""
        self.stats.refused[exc.code] += 1
        rnd.batch.logs.append(
            LogRow(
                now,
                entry.key[0],
                entry.version,
                entry.key[1],
                "error",
                f"{what} refused: {exc.message} ({exc.code})",
            )
        )

    def _actor_failed(
        self, entry: Entry, child: str, name: str, message: str, rnd: Round, now: int
    ) -> None:
        """The instance learns (through its own inbox) that an actor could not start."""
        event = {"type": f"xstate.error.actor.{child}", "error": {"name": name, "message": message}}
        self._send(entry, "#_self", event, rnd, now)

    # -- after commit ---------------------------------------------------------------------

    def _run_action(
        self, entry: Entry, version: Version, effect: RunAction, effect_id: str
    ) -> None:
        token = current_effect_id.set(effect_id)
        try:
            with self._user_code(entry, version):
                try:
                    effect.run()
                except BaseException as exc:  # user code: whatever it raises is its own
                    _logs.capture("error", f"action {effect.name!r} raised {describe(exc)}")
                    traceback.clear_frames(exc.__traceback__)
        finally:
            current_effect_id.reset(token)
        self.pending_done.append(effect_id)
        self._wake.set()

    def _start_service(
        self, entry: Entry, version: Version, effect: StartActor, effect_id: str
    ) -> None:
        if entry.starting.get(effect.id) != effect_id:
            return  # a later round, built while this one committed, already stopped it
        del entry.starting[effect.id]
        token = object()
        task = asyncio.get_running_loop().create_task(
            self._service(entry, version, effect, effect_id, token), name=f"service {effect_id}"
        )
        entry.services[effect.id] = Service(task, effect_id, token)

    async def _service(
        self, entry: Entry, version: Version, effect: StartActor, effect_id: str, token: object
    ) -> None:
        current_effect_id.set(effect_id)
        event: dict[str, Any]
        try:
            with self._user_code(entry, version):
                result = await asyncio.wait_for(call(effect.logic, effect.input), self.step_timeout)
            event = {"type": f"xstate.done.actor.{effect.id}", "output": result}
            encode(result, "the service's result")
        except InvalidRequest as exc:  # from encode: the result is no JSON to store
            event = {
                "type": f"xstate.error.actor.{effect.id}",
                "error": {"name": "InvalidOutput", "message": exc.message},
            }
        except UserRaised as exc:
            raised = exc.raised
            event = {
                "type": f"xstate.error.actor.{effect.id}",
                "error": {"name": type(raised).__name__, "message": str(raised)},
            }
            traceback.clear_frames(raised.__traceback__)
        except TimeoutError:
            error = {
                "name": "Timeout",
                "message": f"stopped after the {self.step_timeout:g} s step timeout",
            }
            event = {"type": f"xstate.error.actor.{effect.id}", "error": error}
        except asyncio.CancelledError:
            # Stopped by a transition (finished in that transition's commit), or by a
            # shutdown or failed commit (then it was interrupted: recovery reports it).
            raise
        if self.entries.get(entry.key) is not entry or self._closing:
            return
        if not self.ownership.owns(entry.key):
            # Created here in another node's shard, which runs it since: the result goes
            # to its owner through the inbox, in the same commit that finishes the effect.
            key = entry.key
            now = self.clock.now_ms()
            self.pending_results.append(InboxRow(0, key[0], key[1], event, "service", 1, 0, now))
            self.pending_done.append(effect_id)
            self._forget_service(entry, effect.id, token)
            self._wake.set()
            return
        entry.queue.append(
            Work("service", event, sender="service", effect_id=effect_id, token=token)
        )
        self.ready[entry.key] = entry
        self._wake.set()

    def _forget_service(self, entry: Entry, child: str, token: object) -> None:
        # The state may have restarted a service with the same id in the same step.
        service = entry.services.get(child)
        if service is not None and service.token is token:
            del entry.services[child]

    def _publish(self, entry: Entry, state: InstanceState) -> None:
        entry.committed = state
        for queue in list(entry.subscribers):
            queue.put_nowait(state)

    def _emit(self, key: InstanceKey, event: dict[str, Any]) -> None:
        for listener in self.emit_listeners:
            listener(key, event)

    # -- settling -----------------------------------------------------------------------------

    def _answer(self, entry: Entry, future: asyncio.Future[InstanceState], rnd: Round) -> None:
        """Answer ``future`` once ``rnd`` commits, with the state right after the work
        just done if that left the instance settled; else once it has settled."""
        settled = entry.settled and entry.key not in rnd.self_sent
        rnd.settle.append((entry, future, self.state(entry) if settled else None))

    def _settled(self, entry: Entry) -> bool:
        """Settled as of its last commit: what runs ahead in a round being built or
        committed (a self-sent event taken from the queue) counts as not yet settled."""
        return entry.settled and entry.key not in self.uncommitted

    def _await_settle(self, entry: Entry, future: asyncio.Future[InstanceState]) -> None:
        if future.done():
            return
        if self._settled(entry):
            future.set_result(entry.committed or self.state(entry))
            return
        handle = asyncio.get_running_loop().call_later(
            self.step_timeout, self._settle_timeout, entry, future
        )
        entry.waiters.append((future, handle))
        self.waiting.add(entry)

    def _release(self, entry: Entry) -> None:
        self.waiting.discard(entry)
        waiters, entry.waiters = entry.waiters, []
        for future, handle in waiters:
            handle.cancel()
            if not future.done():
                future.set_result(entry.committed or self.state(entry))

    def _settle_timeout(self, entry: Entry, future: asyncio.Future[InstanceState]) -> None:
        entry.waiters = [(f, h) for f, h in entry.waiters if f is not future]
        if not entry.waiters:
            self.waiting.discard(entry)
        if not future.done():
            future.set_result(entry.committed or self.state(entry))

    # -- administration ----------------------------------------------------------------------

    async def redeliver(self, row: DeadLetterRow) -> None:
        now = self.clock.now_ms()
        inbox = InboxRow(0, row.machine, row.instance, row.event, row.sender, 1, 0, now)
        result = await asyncio.to_thread(
            self.store.commit, WriteBatch(inbox_inserts=[inbox], dead_letter_deletes=[row.id])
        )
        entry = self._entry((row.machine, row.instance))
        if entry is not None:
            entry.blocked.pop(row.sender, None)
        self._enqueue(
            (row.machine, row.instance),
            Work("inbox", row.event, sender=row.sender, inbox_id=result.inbox_ids[0]),
        )


def _resolve(future: asyncio.Future[InstanceState], state: InstanceState) -> None:
    if not future.done():
        future.set_result(state)


def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
