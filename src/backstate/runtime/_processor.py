"""The processor: applies events to instances durably, one batch at a time.

One asyncio task owns all instance state in this process. Each round it takes every
instance with ready work, applies up to ``BATCH_PER_INSTANCE`` units of work to each (one
at a time, in queue order: see _steps), and commits everything the round wrote in ONE
store transaction (group commit: one fsync for many transitions). Only after that commit
does anything leave the process: callers are answered, custom actions and services run
(_effect_runner), subscribers hear of the new state, timers are armed, and messages
reach their receivers' queues.

When user code runs in this process (``UserCode.synchronous``), a round is built
instance after instance without suspending. When it runs in sandbox workers, every
instance of the round is processed at once: API events in batches per org, one call to a
worker for many instances (_batches), other work in a task per instance, its calls sent
together.

Work reaches an instance's queue from the API (applied in the same transaction that
accepts it, so an accepted event is never lost), from durable inbox rows (messages
from other instances, recovery events), from the timer wheel, and from finished
services. A failed message or timer is retried with backoff while later work from
other senders proceeds; after ``MAX_ATTEMPTS`` it moves to the dead-letter list.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from backstate.store import (
    CommitResult,
    DeadLetterRow,
    InboxRow,
    InstanceKey,
    InstanceRow,
    LogRow,
    Store,
    StoreError,
    WriteBatch,
)
from backstate.store._protocol import ADOPT_CHANNEL, INBOX_CHANNEL, STATE_CHANNEL

from ._batches import Batches
from ._clock import Clock
from ._cluster import Ownership, SoleOwner, shard_of
from ._code import TrustedCode, UserCode
from ._deployments import Registry
from ._effect_runner import EffectRunner, run_now
from ._entries import Entry, InstanceState, Round, Work
from ._errors import BackstateError, NotFound, Unavailable
from ._idempotency import RETENTION_S, Keys
from ._recovery import Recovery
from ._retries import Retries
from ._secrets import Secrets, no_secrets
from ._stats import Stats
from ._steps import BATCH_PER_INSTANCE, Steps
from ._timers import TimerWheel

logger = logging.getLogger("backstate.runtime")

CACHE_SIZE = 10_000
# How long a round waits for sandboxed code to answer before it is sealed without the
# steps still waiting (they write into a later round).
ROUND_WAIT = 0.01
# A burst of more ready instances than this, with no commit in flight, is split in two
# rounds: the first commits while the second is applied (see _loop).
SPLIT_OVER = 8


class Processor:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        clock: Clock,
        step_timeout: float,
        ownership: Ownership | None = None,
        code: UserCode | None = None,
        idempotency_retention: float = RETENTION_S,
    ) -> None:
        self.store = store
        self.code: UserCode = code or TrustedCode()
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
        # Results of services run here for instances another node owns (EffectRunner).
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
        self.closing = False
        self.stats = Stats()
        self.tasks: set[asyncio.Task[None]] = set()  # actions run by sandbox workers
        # The round being built: a step writes into the one open when its writes begin
        # (see _steps), so a step waiting for slow sandboxed code lands in a later round
        # instead of holding this one back.
        self.round = Round()
        self.running: dict[InstanceKey, asyncio.Task[None]] = {}  # steps waiting for code
        self.creating: set[InstanceKey] = set()  # instances whose creation is under way
        self.steps = Steps(self)
        self.batches = Batches(self)
        self.recovery = Recovery(self)
        self.effects = EffectRunner(self)
        self.keys = Keys(self, idempotency_retention)
        self.service_retries = Retries(self)
        self.secrets: Secrets = no_secrets  # machine -> its org's secrets (see _secrets)
        self.code.bind(self.log, clock.now_ms)
        clock.on_advance(self._wake.set)

    def wake(self) -> None:
        self._wake.set()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self.recovery.recover()
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
        self.closing = True
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
        for task in list(self.tasks):
            task.cancel()
        await self.code.close()

    def refuse_waiting(self) -> None:
        """Shutting down: answer every caller still waiting (for an event's services
        to settle, or for work not yet applied, which is dropped) with 503
        ``shutting-down``, and take no new work. Durable work (messages, timers) stays
        for the next start."""
        self.closing = True
        error = Unavailable("shutting-down", "the server is shutting down")
        for entry in self.entries.values():
            for future, handle in entry.waiters:
                handle.cancel()
                if not future.done():
                    future.set_exception(error)
            entry.waiters = []
            for work in [w for w in entry.queue if w.future is not None]:
                entry.queue.remove(work)
                self.reject(work, error)
        self.waiting.clear()
        parked, self.parked = self.parked, []
        for key, work in parked:
            if work.future is None:
                self.parked.append((key, work))
            else:
                self.reject(work, error)
        self._wake.set()

    # -- entry points ---------------------------------------------------------------------

    def submit(self, key: InstanceKey, work: Work) -> None:
        if self.closing:
            raise Unavailable("shutting-down", "the runtime is shutting down")
        if not self.ownership.owns(key):
            raise Unavailable(
                "store-unavailable", f"{key[0]}/{key[1]} is run by another node; retry"
            )
        self.enqueue(key, work, create=work.kind == "create")

    def enqueue(self, key: InstanceKey, work: Work, create: bool = False) -> None:
        # A message may arrive before its receiver exists: it waits (and retries) in a
        # placeholder entry rather than being dropped.
        try:
            entry = self.entry(key, create=create or work.kind == "inbox")
        except NotFound as exc:
            if work.future is not None:
                self.reject(work, exc)
            else:
                # Its machine version is not deployed (yet): keep the work for deploy().
                self.parked.append((key, work))
            return
        if entry is None:
            self.reject(work, NotFound("instance-not-found", f"no instance {key[0]}/{key[1]}"))
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
                self.enqueue(key, work)
            else:
                self.parked.append((key, work))

    def entry(self, key: InstanceKey, create: bool = False) -> Entry | None:
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
        """Build a round while the previous one commits (pipelining), taking in all
        that comes until that commit is done (group commit): a round's effects still
        happen only after its own commit, and commits stay in order."""
        pending: tuple[Round, asyncio.Future[CommitResult]] | None = None
        while True:
            committing = pending is not None and not pending[1].done()
            if (
                not self.ready
                and not self.closing
                and (
                    committing
                    or (not self.pending_done and not self.pending_logs and self.round.empty)
                )
            ):
                await self._idle(pending[1] if pending else None)
            self._wake.clear()
            self._fire_timers()
            self._due_retries(self.clock.now_ms())
            if self.closing:
                await self._stop_running()
            entries = [e for e in self.ready.values() if not e.busy]
            self.ready.clear()  # a busy one is queued again when its step ends
            if pending is None and len(entries) > SPLIT_OVER:
                # A burst with no commit in flight: half now, committed while the other
                # half is applied, so the commit does not run with nothing beside it.
                for entry in entries[len(entries) // 2 :]:
                    self.ready[entry.key] = entry
                del entries[len(entries) // 2 :]
            if await self.keys.prefetch(entries, BATCH_PER_INSTANCE):
                # (a busy one, started meanwhile, is queued again when its step ends)
                entries = [e for e in entries if not e.busy]
            if self.code.synchronous:
                for entry in entries:
                    run_now(self.steps.process(entry))
            elif entries:
                await self._wait_for_steps(
                    self.batches.start(entries), pending[1] if pending else None
                )
            if pending is not None and not pending[1].done() and not self.closing:
                # Group commit: the round takes in what comes while the commit in flight
                # lasts, and is sealed once it is done. Sealed at once, it held the work
                # of the first request or two after the previous commit began, and the
                # rest waited for a commit more: rounds of 1, 3, 10 and 19 in turn at 32
                # requests in flight, each paying a whole commit.
                continue
            rnd, self.round = self.round, Round()
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
                pending = (rnd, self._commit(rnd.batch))
                continue
            if rnd.after or rnd.settle:
                # Nothing to write, yet callers to answer (a duplicate create, answered
                # once the first is committed): every earlier round is finished by now.
                self._finish(rnd, CommitResult([]))
            if self.closing and not self.ready and not self.running:
                return

    async def _wait_for_steps(
        self, steps: list[asyncio.Task[None]], commit: asyncio.Future[CommitResult] | None
    ) -> None:
        """Until the round's steps are done, or ``ROUND_WAIT`` has passed and the commit
        in flight is done: sealed any sooner, the round could not be committed sooner,
        and the steps answered meanwhile would wait for the next one."""
        _, rest = await asyncio.wait(steps, timeout=ROUND_WAIT)
        while rest and commit is not None and not commit.done():
            waiting: set[asyncio.Future[Any]] = {*rest, commit}
            _, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            rest = {t for t in rest if t in waiting}

    def run(self, entry: Entry) -> asyncio.Task[None]:
        """Process the entry's queue in a task of its own (sandboxed code)."""
        entry.busy = True
        task = asyncio.get_running_loop().create_task(self.process(entry))
        self.running[entry.key] = task
        return task

    async def process(self, entry: Entry, limit: int = BATCH_PER_INSTANCE) -> None:
        """Up to ``limit`` units of the entry's work (see Steps.process), then it is
        free again."""
        try:
            await self.steps.process(entry, limit)
        finally:
            self.release(entry)

    def release(self, entry: Entry) -> None:
        """The entry's step is over (or never began): it is ready again if it has work."""
        entry.busy = False
        if self.running.get(entry.key) is asyncio.current_task():
            del self.running[entry.key]
        if entry.queue and self.entries.get(entry.key) is entry:
            self.ready[entry.key] = entry
        self._wake.set()

    async def _stop_running(self, keys: Callable[[InstanceKey], bool] | None = None) -> None:
        """Cancel steps still waiting for sandboxed code (their callers are told so);
        nothing of theirs was written."""
        tasks = [t for k, t in self.running.items() if keys is None or keys(k)]
        for task in tasks:
            task.cancel("shutting-down")
        if tasks:
            await asyncio.wait(tasks)

    def _commit(self, batch: WriteBatch) -> asyncio.Future[CommitResult]:
        """The batch's commit, begun (SQLite's writer is sent it at once): a commit in
        flight wakes the loop when it is done."""
        started = time.perf_counter()
        commit = asyncio.ensure_future(self.store.commit_async(batch))

        def committed(_: asyncio.Future[CommitResult]) -> None:
            self.stats.commit_seconds += time.perf_counter() - started
            self._wake.set()

        commit.add_done_callback(committed)
        return commit

    async def _idle(self, commit: asyncio.Future[CommitResult] | None) -> None:
        """Wait for work, the next due timer or retry, or the commit in flight."""
        due = self.wheel.next_due()
        if self.retries and (due is None or self.retries[0][0] < due):
            due = self.retries[0][0]
        timeout = None if due is None else self.clock.seconds_until(due)
        if commit is not None and commit.done():
            return
        # A commit in flight wakes the loop when it is done (see ``_commit``).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    def _fire_timers(self) -> None:
        for due in self.wheel.pop_due(self.clock.now_ms()):
            if not self.ownership.owns(due.key):
                self.wheel.cancel(due.key, due.timer)  # its owner fires it
                continue
            self.enqueue(
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
            self.enqueue(key, work)
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
        rounds = [*rounds, self.round]  # and what steps wrote since into the open one
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
        for task in self.running.values():
            task.cancel("store-unavailable")
        self.round = Round()
        self.creating.clear()
        self.entries.clear()
        self.queued_inbox.clear()
        self.foreign.clear()
        self.uncommitted.clear()
        self.ready.clear()
        self.waiting.clear()
        self.retries.clear()
        self.wheel = TimerWheel()
        self._recovering = asyncio.get_running_loop().create_task(
            self.recovery.recover_when_possible()
        )

    def retry_later(self, entry: Entry, at_ms: int) -> None:
        heapq.heappush(self.retries, (at_ms, next(self._retry_seq), entry.key))

    def _due_retries(self, now: int) -> None:
        while self.retries and self.retries[0][0] <= now:
            _, _, key = heapq.heappop(self.retries)
            entry = self.entries.get(key)
            if entry is not None and entry.queue:
                self.ready[key] = entry

    def forget_instance(self, entry: Entry) -> None:
        key = entry.key
        for service in entry.services.values():
            service.task.cancel()
        entry.services.clear()
        for work in entry.queue:
            self.reject(work, NotFound("instance-not-found", f"{key[0]}/{key[1]} was deleted"))
        entry.queue.clear()
        self.wheel.forget_instance(key)
        if self.entries.get(key) is entry:
            del self.entries[key]
        self.ready.pop(key, None)

    def requeue(self, entry: Entry) -> None:
        if entry.queue and self.entries.get(entry.key) is entry:
            self.ready[entry.key] = entry
            self._wake.set()

    def log(self, row: LogRow) -> None:
        """Keep a log line of user code run outside a round (it goes into the next)."""
        self.pending_logs.append(row)
        self._wake.set()

    def reject(self, work: Work, exc: BackstateError) -> None:
        if work.future is not None and not work.future.done():
            work.future.set_exception(exc)

    def publish(self, entry: Entry, state: InstanceState) -> None:
        entry.committed = state
        for queue in list(entry.subscribers):
            queue.put_nowait(state)

    def emit(self, key: InstanceKey, event: dict[str, Any]) -> None:
        for listener in self.emit_listeners:
            listener(key, event)

    # -- settling -----------------------------------------------------------------------------

    def answer(
        self,
        entry: Entry,
        future: asyncio.Future[InstanceState],
        rnd: Round,
        state: InstanceState | None = None,
    ) -> None:
        """Answer ``future`` once ``rnd`` commits, with the state right after the work
        just done (``state``, if given) if that left the instance settled; else once it
        has settled."""
        if entry.settled and entry.key not in rnd.self_sent:
            rnd.settle.append((entry, future, state or self.state(entry)))
        else:
            rnd.settle.append((entry, future, None))

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
            self.step_timeout_of(entry), self._settle_timeout, entry, future
        )
        entry.waiters.append((future, handle))
        self.waiting.add(entry)

    def step_timeout_of(self, entry: Entry) -> float:
        """The instance's version's step timeout, else the runtime's."""
        try:
            version = self.registry.get(entry.key[0], entry.version)
        except NotFound:
            return self.step_timeout
        return version.step_timeout or self.step_timeout

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
        entry = self.entry((row.machine, row.instance))
        if entry is not None:
            entry.blocked.pop(row.sender, None)
        self.enqueue(
            (row.machine, row.instance),
            Work("inbox", row.event, sender=row.sender, inbox_id=result.inbox_ids[0]),
        )


def _resolve(future: asyncio.Future[InstanceState], state: InstanceState) -> None:
    if not future.done():
        future.set_result(state)
