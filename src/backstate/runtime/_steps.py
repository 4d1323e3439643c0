"""Steps: what one unit of work does to one instance, written into the round being built.

A unit of work (an API event, a message, a timer, a service's result, a creation, an
administrative change) runs in two phases. First whatever user code it needs, through
``UserCode`` (the authorizer and the transition, a migration, the initial transitions
of persistent children it starts); that may suspend while the code runs in a sandbox
worker, and other instances' work proceeds meanwhile. Then, without suspending, its
writes: the new snapshot, its history row, timers, messages, effects and index entries
(a ``section``). A failure of the first phase writes nothing. A failure inside a
section (a bug) is undone, in the round and in memory, so that it fails only that work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from backstate.chart import (
    StartActor,
)
from backstate.chart._unhandled import finished
from backstate.store import (
    DeadLetterRow,
    HistoryRow,
    InstanceKey,
    InstanceRow,
    LogRow,
    RawJson,
    TimerRow,
)

from ._code import Step, Upgraded, WriteCheck
from ._deployments import Persistent, Version, address, namespace_of, unqualified
from ._entries import Entry, InstanceState, Round, Work
from ._errors import BackstateError, Conflict, InvalidRequest, NotFound, Unavailable
from ._indexes import IndexEntry, index_entries
from ._json import encode_state
from ._migrations import (
    UPGRADE_EVENT,
    MigrationFailed,
    NoMigrationPath,
    upgrade_path,
)
from ._retries import RETRY_EVENT
from ._upgrade_timers import AFTER, TimerPlan, plan_timers
from ._writes import EffectWrites

if TYPE_CHECKING:
    from ._processor import Processor

logger = logging.getLogger("backstate.runtime")

MAX_CONTEXT_BYTES = 400_000
MAX_ATTEMPTS = 5
BATCH_PER_INSTANCE = 16
# Persistent children created by one step, each possibly creating its own: how deep.
MAX_CHILD_DEPTH = 16
# Work that waits while an instance is paused or its sender is backing off; API calls
# and administration are answered at once.
HELD_WHILE_PAUSED = ("inbox", "timer", "service")


class Prepared:
    """A persistent child that a step starts, made ready before the step's section:
    ``created`` (its initial step, and its own children, to write with the parent's),
    ``linked`` (it exists already) or ``refused`` (an error for the parent)."""

    __slots__ = ("children", "entry", "error", "key", "step", "version")

    def __init__(
        self,
        key: InstanceKey,
        entry: Entry | None = None,
        version: Version | None = None,
        step: Step | None = None,
        children: dict[str, Prepared] | None = None,
        error: BackstateError | None = None,
    ) -> None:
        self.key = key
        self.entry = entry
        self.version = version
        self.step = step
        self.children = children or {}
        self.error = error


class Section:
    """See ``Steps.section``. (A class, not a generator: it wraps every transition.)"""

    __slots__ = ("entries", "journal", "mark", "processor", "rnd", "states")

    def __init__(self, processor: Processor, entries: list[Entry]) -> None:
        self.processor = processor
        self.entries = entries

    def __enter__(self) -> Round:
        self.rnd = rnd = self.processor.round
        self.mark = rnd.mark([e.key for e in self.entries])
        self.states = [e.mark() for e in self.entries]
        self.journal = self.processor.wheel.journal()
        return rnd

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        wheel = self.processor.wheel
        if exc is not None:
            self.rnd.rollback(self.mark)
            for entry, state in zip(self.entries, self.states, strict=True):
                entry.restore(state)
                if not entry.exists:  # a creation that failed: its name is free again
                    self.processor.creating.discard(entry.key)
            wheel.rollback(self.journal)
        wheel.close(self.journal)
        self.processor.wake()  # a step that waited for code: the loop seals its round


class Steps:
    def __init__(self, processor: Processor) -> None:
        self.p = processor
        self.writes = EffectWrites(self)

    # -- one instance's queue ---------------------------------------------------------------

    async def process(self, entry: Entry, limit: int = BATCH_PER_INSTANCE) -> None:
        """Up to ``limit`` units of the instance's queued work, in order; work held back
        (paused, or its sender backing off) keeps its place."""
        p = self.p
        now = p.clock.now_ms()
        handled = 0
        skipped: list[Work] = []
        held: set[str] = set()  # senders with held work: their later work waits too
        while entry.queue and handled < limit:
            work = entry.queue.popleft()
            # Each work's own time: waiting for sandboxed code, work (a timer just due)
            # may join the queue after this loop began.
            now = p.clock.now_ms()
            if work.kind in HELD_WHILE_PAUSED and (
                entry.paused or work.sender in held or entry.blocked.get(work.sender, 0) > now
            ):
                held.add(work.sender)
                skipped.append(work)
                continue
            handled += 1
            p.stats.handled[work.kind] += 1
            try:
                await self.handle(entry, work, now)
            except asyncio.CancelledError as stopped:
                # Stopped waiting for sandboxed code (shutting down, shards lost, a
                # failed commit: the reason is the cancellation's message): nothing of
                # it was written; its caller is told.
                code = str(stopped.args[0]) if stopped.args else "shutting-down"
                p.reject(work, Unavailable(code, "the step was stopped; retry"))
                raise
            except BackstateError as exc:
                p.stats.refused[exc.code] += 1
                with self.section(entry) as rnd:
                    self.failed(entry, work, exc, rnd, now)
            except Exception as exc:  # a bug of ours, undone by its section: only this work fails
                logger.exception("%s/%s: %s failed", *entry.key, work.kind)
                error = BackstateError("internal-error", f"internal error: {type(exc).__name__}")
                p.stats.refused[error.code] += 1
                with self.section(entry) as rnd:
                    self.failed(entry, work, error, rnd, now)
            if work.kind == "resume" and skipped:
                break  # what was held runs first, in order, in the next round
        entry.queue.extendleft(reversed(skipped))
        if entry.queue and (
            handled == limit or (skipped and not entry.paused and not entry.blocked)
        ):
            p.ready[entry.key] = entry
        elif skipped and not entry.paused:
            retry = min(entry.blocked.get(w.sender, now) for w in skipped)
            p.retry_later(entry, retry)

    def section(self, entry: Entry, children: dict[str, Prepared] | None = None) -> Section:
        """Writes that must happen whole or not at all, into the round open when it
        starts (never suspending inside): to that round, the entry, the ``children`` it
        creates, and the timer wheel."""
        return Section(self.p, [entry, *_created(children)] if children else [entry])

    async def handle(self, entry: Entry, work: Work, now: int) -> None:
        p = self.p
        if work.idempotency is not None and p.keys.replayed(entry, work, now):
            return
        if work.kind == "create":
            await self.create(entry, work, now)
            return
        if not entry.exists:
            raise NotFound("instance-not-found", f"no instance {entry.key[0]}/{entry.key[1]}")
        if work.kind in ("pause", "resume", "delete"):
            with self.section(entry) as rnd:
                self.administer(entry, work, rnd)
            return
        if work.kind == "desire":
            await self.desire(entry, work, now)
            return
        if entry.desired is not None and entry.settled and work.kind in ("api", "inbox", "timer"):
            await self.upgrade(entry, now)
        if work.kind == "api" and entry.paused:
            raise Conflict("invalid-state", f"{entry.key[0]}/{entry.key[1]} is paused")
        due = work.due
        if due is not None:
            if not p.wheel.is_current(due):
                return
            if work.event.get("type") == RETRY_EVENT:
                with self.section(entry) as rnd:
                    self.timer_fired(entry, work, rnd)
                    p.service_retries.fire(entry, work, rnd)
                return
            if due.to != "#_self":
                with self.section(entry) as rnd:
                    self.timer_fired(entry, work, rnd)
                    self.writes.send(entry, due.to, work.event, rnd, now)
                return
        relayed = work.kind == "inbox" and work.sender == "service"
        if (work.kind == "service" or relayed) and self.stale_result(entry, work):
            with self.section(entry) as rnd:
                if relayed and work.inbox_id is not None:
                    rnd.batch.inbox_deletes.append(work.inbox_id)
                elif work.effect_id:
                    rnd.batch.effect_done.append(work.effect_id)
            return
        if work.kind == "service":
            retried = p.service_retries.retrying(entry, work)
            if retried is not None:
                with self.section(entry) as rnd:
                    p.service_retries.schedule(entry, retried, work, rnd, now)
                return
        version = p.registry.get(entry.key[0], entry.version)
        assert entry.snapshot is not None
        pre, entry.prefetched = entry.prefetched, None  # made in a batch (see _batches)
        if (
            pre is not None
            and pre.work is work
            and pre.snapshot is entry.snapshot
            and pre.version is version
        ):
            if isinstance(pre.result, BackstateError):
                raise pre.result
            step = pre.result
        else:
            check = self.write_check(work)
            step = await p.code.transition(version, entry.key[1], entry.snapshot, work.event, check)
        if work.kind == "api":
            before = entry.snapshot
            work.unhandled = (
                step.snapshot.unhandled
                if before.status == "active"
                else finished(before.configuration, work.event["type"])
            )
        children = await self.prepare_children(entry, version, step, 0)
        with self.section(entry, children) as rnd:
            if due is not None:
                self.timer_fired(entry, work, rnd)
            state = self.commit_transition(
                entry, version, work.event, step, rnd, now, children, event_json=work.event_json
            )
            if work.kind == "inbox" and work.inbox_id is not None:
                rnd.batch.inbox_deletes.append(work.inbox_id)
            elif work.kind == "service":
                rnd.batch.effect_done.append(work.effect_id or "")
                child = work.event["type"].split(".", 3)[3]
                token = work.token
                rnd.after.append(lambda: p.effects.forget_service(entry, child, token))
            if work.future is not None:
                p.answer(entry, work.future, rnd, state)
            if work.idempotency is not None:
                p.keys.record(entry, work, state, rnd, now)

    def timer_fired(self, entry: Entry, work: Work, rnd: Round) -> None:
        """A timer's row goes in the same section as what it does, and before it: a
        transition that re-arms the same timer id writes the new row after this one's
        deletion."""
        assert work.due is not None
        self.p.wheel.cancel(entry.key, work.due.timer)
        rnd.batch.timer_ops.append((entry.key, work.due.timer))

    def write_check(self, work: Work) -> WriteCheck | None:
        """What ``allow_write`` sees of the work's sender: the caller's auth context, or,
        for a message from another instance, that instance with its org (always the
        receiver's own: see ``address``); nothing for the runtime's own events."""
        if work.auth is not None:
            return WriteCheck(work.auth, "event")
        if work.kind != "inbox" or work.sender in ("self", "recovery", "service"):
            return None
        machine, _, name = work.sender.partition("/")
        sender = {"machineName": unqualified(machine), "machineInstanceName": name}
        namespace = namespace_of(machine)
        if namespace is not None:
            sender["orgId"] = namespace
        return WriteCheck({"stateBackedSender": sender}, "event")

    def stale_result(self, entry: Entry, work: Work) -> bool:
        """Whether a service's result is dropped: only when another invocation with the
        same id has started since (a result from here carries its service's token; one
        relayed by the node that created the instance, see EffectRunner.service, meets a
        service of this node's own). A result already queued when its invoking state
        was left is delivered, as XState and SCXML deliver events already queued."""
        child = work.event["type"].split(".", 3)[3]
        if child in entry.starting:
            return True
        service = entry.services.get(child)
        if work.kind == "service":
            return service is not None and service.token is not work.token
        return service is not None

    # -- creation -------------------------------------------------------------------------

    async def create(self, entry: Entry, work: Work, now: int) -> None:
        p = self.p
        if entry.exists or entry.key in p.creating:
            exc = Conflict(
                "instance-exists", f"instance {entry.key[0]}/{entry.key[1]} already exists"
            )
            if entry.committed is None:
                # Its creation is not committed yet: answer once it is, so a caller that
                # reads it next (State Backed's get-or-create) finds it.
                with self.section(entry) as rnd:
                    rnd.after.append(lambda: p.reject(work, exc))
                    if work.future is not None:
                        rnd.deferred.append(work.future)
                return
            raise exc
        opts = work.create or {}
        version = p.registry.get(entry.key[0], opts.get("version"))
        check = WriteCheck(work.auth, "initialization") if work.auth is not None else None
        p.creating.add(entry.key)  # no other creation of it while this one runs
        try:
            step = await p.code.initial(
                version, entry.key[1], opts.get("input"), opts.get("context"), check
            )
            children = await self.prepare_children(entry, version, step, 0)
        except BaseException:
            p.creating.discard(entry.key)
            raise
        with self.section(entry, children) as rnd:
            state = self.commit_creation(entry, version, opts, step, rnd, now, children)
            if work.future is not None:
                p.answer(entry, work.future, rnd, state)
            if work.idempotency is not None:
                p.keys.record(entry, work, state, rnd, now)

    def commit_creation(
        self,
        entry: Entry,
        version: Version,
        opts: dict[str, Any],
        step: Step,
        rnd: Round,
        now: int,
        children: dict[str, Prepared],
    ) -> InstanceState:
        entry.version = version.id
        entry.parent = opts.get("parent")
        entry.created_at = now
        event = {"type": "xstate.init", "input": opts.get("input")}
        state = self.commit_transition(
            entry, version, event, step, rnd, now, children, created=True
        )
        self.p.creating.discard(entry.key)  # it exists from now on
        return state

    async def prepare_children(
        self, entry: Entry, version: Version, step: Step, depth: int
    ) -> dict[str, Prepared]:
        """Ready the persistent children that ``step`` starts (by actor id): their
        initial transitions run now, before the parent's section writes them."""
        prepared: dict[str, Prepared] = {}
        for effect in step.effects:
            if not isinstance(effect, StartActor) or not isinstance(effect.logic, Persistent):
                continue
            logic = effect.logic
            try:
                key = address(logic.machine, logic.instance, entry.key[0])
            except InvalidRequest as exc:
                prepared[effect.id] = Prepared(entry.key, error=exc)
                continue
            child = self.p.entry(key, create=True)
            assert child is not None
            if child.exists or key in self.p.creating:
                prepared[effect.id] = Prepared(key)
                continue
            if depth >= MAX_CHILD_DEPTH:
                error = InvalidRequest(
                    "too-deep", f"persistent children nest deeper than {MAX_CHILD_DEPTH}"
                )
                prepared[effect.id] = Prepared(key, error=error)
                continue
            self.p.creating.add(key)
            try:
                child_version = self.p.registry.get(key[0])
                child_step = await self.p.code.initial(
                    child_version, key[1], effect.input, None, None
                )
                grandchildren = await self.prepare_children(
                    child, child_version, child_step, depth + 1
                )
            except BackstateError as exc:
                self.p.creating.discard(key)
                prepared[effect.id] = Prepared(key, error=exc)
                continue
            except BaseException:
                self.p.creating.discard(key)
                raise
            prepared[effect.id] = Prepared(key, child, child_version, child_step, grandchildren)
        return prepared

    # -- writing a transition ---------------------------------------------------------------

    def commit_transition(
        self,
        entry: Entry,
        version: Version,
        event: dict[str, Any],
        step: Step,
        rnd: Round,
        now: int,
        children: dict[str, Prepared] | None = None,
        created: bool = False,
        event_json: RawJson | None = None,
    ) -> InstanceState:
        """Write the step as the instance's next transition; its new state."""
        snap = step.snapshot
        # What can fail is done before anything changes. A snapshot whose text a
        # sandboxed worker sent (checked by the sandbox) is not encoded again.
        plain = snap.json_text
        if plain is None:
            plain = snap.json_text = encode_state(snap.to_json(), "the context")
        text = RawJson(plain)
        event_text = event_json or RawJson(encode_state(event, "the event"))
        # A snapshot is never shorter than its context: the exact size of the context
        # is needed only for large snapshots.
        if len(text) > MAX_CONTEXT_BYTES:
            size = len(encode_state(snap.context, "the context").encode())
            if size > MAX_CONTEXT_BYTES:
                raise InvalidRequest(
                    "context-too-large",
                    f"context would be {size} bytes of JSON; the limit is {MAX_CONTEXT_BYTES}",
                )
        indexed: tuple[frozenset[IndexEntry], list[str]] | None = None
        specs = self.p.registry.indexes(version)
        if specs or entry.indexed:
            indexed = index_entries(specs, snap.context, snap.state_strings)
        seq = 0 if created else entry.seq + 1
        expected = None if created else entry.seq
        was_active = created or (entry.snapshot is not None and entry.snapshot.status == "active")
        entry.exists = True
        entry.seq = seq
        entry.snapshot = snap
        entry.updated_at = now
        key = entry.key
        prefix = f"{key[0]}/{key[1]}/{seq}"
        for index, effect in enumerate(step.effects):
            self.writes.effect(
                entry, version, effect, f"{prefix}/{index}", rnd, now, children or {}
            )
        if snap.status in ("done", "error") and was_active:
            # A finished actor's delayed events are cancelled (XState, SCXML), those
            # this very step scheduled included.
            for due in self.p.wheel.timers_of(key):
                rnd.batch.timer_ops.append((key, due.timer))
                self.p.wheel.cancel(key, due.timer)
            if entry.parent is not None:
                self.writes.report_to_parent(entry, snap.status, snap.output, snap.error, rnd, now)
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
        if indexed is not None:
            self.writes.index(entry, version, indexed, rnd, now)
        state = self.p.state(entry)
        p = self.p
        rnd.after.append(lambda: p.publish(entry, state))
        return state

    # -- administration, upgrades -------------------------------------------------------------

    def administer(self, entry: Entry, work: Work, rnd: Round) -> None:
        p = self.p
        key = entry.key
        if work.kind == "delete":
            rnd.batch.instance_deletes.append(key)
            entry.exists = False
            rnd.after.append(lambda: p.forget_instance(entry))
        else:
            entry.paused = work.kind == "pause"
            rnd.batch.status_updates.append((key, "paused" if entry.paused else "running"))
            if not entry.paused:
                entry.blocked.clear()
                rnd.after.append(lambda: p.requeue(entry))
        future = work.future
        if future is not None:
            state = p.state(entry)
            rnd.after.append(lambda: _resolve(future, state))
        if work.kind != "delete":
            rnd.after.append(lambda: p.publish(entry, p.state(entry)))

    async def desire(self, entry: Entry, work: Work, now: int) -> None:
        """Record the version an instance upgrades to at its next settled event (or at
        once, if asked and settled). Refused unless migrations lead there."""
        p = self.p
        target = (work.create or {})["version"]
        upgrade_path(
            p.registry.migrations(entry.key[0]),
            p.registry.get(entry.key[0], entry.version),
            p.registry.get(entry.key[0], target),
        )
        with self.section(entry) as rnd:
            entry.desired = None if target == entry.version else target
            rnd.batch.desired_updates.append((entry.key, entry.desired))
        if (work.create or {}).get("now") and entry.desired is not None and entry.settled:
            failure = await self.upgrade(entry, now)
            if failure is not None:
                raise failure  # logged and cleared in this round, and answered
        with self.section(entry) as rnd:
            if work.future is not None:
                p.answer(entry, work.future, rnd)
            state = p.state(entry)
            rnd.after.append(lambda: p.publish(entry, state))

    async def upgrade(self, entry: Entry, now: int) -> BackstateError | None:
        """Migrate the instance to its desired version, recorded as a transition. If the
        migration fails, the instance stays as it was, the failure is logged and
        returned."""
        p = self.p
        key, source_id, target_id = entry.key, entry.version, entry.desired
        assert target_id is not None and entry.snapshot is not None
        source = p.registry.get(key[0], source_id)
        try:
            target = p.registry.get(key[0], target_id)
            chain = upgrade_path(p.registry.migrations(key[0]), source, target)
            upgraded = await p.code.upgrade(source, target, chain, key[1], entry.snapshot)
        except (MigrationFailed, NoMigrationPath, NotFound) as exc:
            with self.section(entry) as rnd:
                entry.desired = None
                rnd.batch.desired_updates.append((key, None))
                rnd.batch.logs.append(
                    LogRow(
                        now,
                        key[0],
                        source_id,
                        key[1],
                        "error",
                        f"upgrade from {source_id} to {target_id} failed; the instance stays "
                        f"on {source_id}: {exc.message}",
                    )
                )
            return exc
        snap = upgraded.snapshot
        with self.section(entry) as rnd:
            entry.desired = None
            plan = self.timer_plan(entry, upgraded, now)
            for timer in plan.cancelled:
                rnd.batch.timer_ops.append((key, timer))
                p.wheel.cancel(key, timer)
            for timer, due_ms in plan.armed:
                fires = {"type": timer}
                rnd.batch.timer_ops.append(
                    TimerRow(key[0], key[1], timer, fires, due_ms, "#_self", 0)
                )
                p.wheel.add(key, timer, due_ms, fires, "#_self")
            entry.version = target_id
            entry.indexed = None  # the target's selectors may differ: rewrite the entries
            event: dict[str, Any] = {
                "type": UPGRADE_EVENT,
                "fromMachineVersionId": source_id,
                "toMachineVersionId": target_id,
                "migrationPath": [m.id for m in chain],
            }
            if not chain:
                # No migration was uploaded: the two versions have the same states.
                event["impliedIdentityMigration"] = True
            self.commit_transition(entry, target, event, Step(snap, []), rnd, now)
            if entry.indexed is None:  # the target indexes nothing: drop the source's entries
                entry.indexed = frozenset()
                rnd.batch.index_puts.append((key, entry.indexed))
        return None

    def timer_plan(self, entry: Entry, upgraded: Upgraded, now: int) -> TimerPlan:
        """What upgrading ``entry`` to ``upgraded`` does to its ``after`` timers (the
        upgrade carries it out, the dry run reports it)."""
        assert entry.snapshot is not None
        pending = {
            timer: due_ms
            for timer, due_ms in self.p.wheel.due_times_of(entry.key).items()
            if timer.startswith(AFTER)
        }
        return plan_timers(pending, set(entry.snapshot.active_ids), upgraded.timers, now)

    # -- failures -------------------------------------------------------------------------------

    def failed(self, entry: Entry, work: Work, exc: BackstateError, rnd: Round, now: int) -> None:
        p = self.p
        if work.future is not None:
            p.reject(work, exc)
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
                p.wheel.add(entry.key, d.timer, retry_at, d.event, d.to, attempts)
                return
            work.attempts = attempts
            entry.blocked[work.sender] = retry_at
            entry.queue.appendleft(work)
            p.retry_later(entry, retry_at)
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


def _created(children: dict[str, Prepared]) -> Iterator[Entry]:
    for prepared in children.values():
        if prepared.entry is not None and prepared.step is not None:
            yield prepared.entry
            yield from _created(prepared.children)


def _resolve(future: Any, state: Any) -> None:
    if not future.done():
        future.set_result(state)
