"""``Backstate``: the durable runtime as a library."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, overload

from backstate.chart import ExecutionError, Machine, to_event
from backstate.store import (
    DeadLetterRow,
    HistoryRow,
    IndexBackfillRow,
    IndexHit,
    InstanceRow,
    LogRow,
    RawJson,
    Store,
    open_store,
)

from . import _logs
from ._backfill import IndexBackfill
from ._clock import Clock, SystemClock
from ._cluster import Cluster
from ._code import UserCode
from ._deployments import (
    Authorizer,
    Registry,
    Version,
    check_event_type,
    check_machine,
    check_name,
    check_step_timeout,
)
from ._entries import InstanceState, Work
from ._errors import Conflict, Forbidden, InvalidRequest, NotFound, Unavailable
from ._idempotency import RETENTION_S, idempotency
from ._indexes import IndexPage, compile_selectors, index_query
from ._json import encode
from ._migrations import Migration, UpgradeContext, UpgradeReport, UpgradeState, upgrade_path
from ._processor import Processor
from ._progress import Progress
from ._secrets import Secrets
from ._upgrade_timers import AFTER, plan_timers

MAX_EVENT_BYTES = 400_000


class Backstate:
    """Durable statechart instances on a store: a SQLite file's path (the default), a
    store URL (``postgresql://...``, see ``backstate.store.open_store``) or a ``Store``.

    Deploy machines, then ``await start()`` (or use ``async with``). Every method that
    changes an instance returns once the change is durably committed and the instance
    has settled (no running services) or the step timeout passed.
    """

    def __init__(
        self,
        store: str | Path | Store = "backstate.db",
        *,
        clock: Clock | None = None,
        step_timeout: float = 90.0,
        synchronous: str = "FULL",
        cluster: Cluster | None = None,
        code: UserCode | None = None,
        idempotency_retention: float = RETENTION_S,
        secrets: Secrets | None = None,
        backfill_batch: int = 100,
        backfill_pause: float = 0.0,
    ) -> None:
        """``cluster``: run as one of many nodes sharing a PostgreSQL store (see
        _cluster); without it this process runs every instance of the store. ``code``:
        where machine code runs (``backstate.sandbox``); by default in this process.
        ``idempotency_retention``: seconds an idempotency key is remembered (24 h).
        ``secrets``: a machine's name -> the secrets its effects may read (_secrets).
        ``backfill_batch``, ``backfill_pause``: how many instances an index backfill
        indexes per transaction, and the seconds it rests between two (_backfill)."""
        self.store: Store = (
            open_store(store, synchronous=synchronous) if isinstance(store, str | Path) else store
        )
        self.clock = clock or SystemClock()
        self.registry = Registry()
        self.cluster = cluster
        self.processor = Processor(
            self.store,
            self.registry,
            self.clock,
            step_timeout,
            cluster,
            code,
            idempotency_retention,
        )
        if secrets is not None:
            self.processor.secrets = secrets
        self.backfill = IndexBackfill(self.store, self.registry, backfill_batch, backfill_pause)
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------

    def deploy(
        self,
        name: str,
        machine: Machine,
        *,
        version: str = "v1",
        allow_read: Authorizer | None = None,
        allow_write: Authorizer | None = None,
        make_current: bool = True,
        indexes: Mapping[str, str] | None = None,
        step_timeout: float | None = None,
    ) -> None:
        """Deploy a version of a machine. ``indexes`` maps index names to selectors
        (JSONPath into the context, or ``@state``); see docs/runtime.md#indexes.
        ``step_timeout``: this version's, instead of the runtime's."""
        specs = compile_selectors(indexes or {})
        timeout = None if step_timeout is None else check_step_timeout(step_timeout)
        self.deploy_version(
            Version(name, version, machine, allow_read, allow_write, specs, step_timeout=timeout),
            make_current,
        )

    def deploy_version(self, version: Version, make_current: bool = True) -> None:
        """Deploy a version as the registry holds it (what ``deploy`` makes of a machine,
        or a sandbox of a file: ``backstate.sandbox``)."""
        check_machine(version.machine_name)
        check_name("version", version.id)
        self.registry.add(version, make_current)
        self.store.record_version(version.machine_name, version.id, self.clock.now_ms())
        self.processor.deployed(version.machine_name)

    def make_current(self, name: str, version: str) -> None:
        """Make a deployed version the one new instances start on."""
        self.registry.make_current(name, version)

    def remove_migration(self, machine: str, migration_id: str) -> None:
        """Forget a migration: upgrades from now on find their paths without it."""
        self.registry.remove_migration(machine, migration_id)

    def add_migration(
        self,
        machine: str,
        migration_id: str,
        from_version: str,
        to_version: str,
        upgrade_state: UpgradeState,
        upgrade_context: UpgradeContext,
    ) -> None:
        """Register a migration between two versions of ``machine`` (see _migrations)."""
        check_machine(machine)
        for what, value in (("migration", migration_id), ("version", from_version)):
            check_name(what, value)
        check_name("version", to_version)
        if from_version == to_version:
            raise InvalidRequest("invalid-migration", "a migration needs two different versions")
        self.registry.add_migration(
            Migration(
                migration_id, machine, from_version, to_version, upgrade_state, upgrade_context
            )
        )

    async def start(self) -> None:
        _logs.install()
        # Before any transition runs: each must write the added indexes' entries too.
        await asyncio.to_thread(self.backfill.load)
        await self.processor.start()
        if self.cluster is not None:
            await self.cluster.start(self.processor)
        self.processor.keys.start()
        self.backfill.start()
        self._started = True

    async def close(self) -> None:
        if self._started:
            await self.backfill.close()
            await self.processor.keys.stop()
            if self.cluster is not None:
                await self.cluster.stop()
            await self.processor.close()
            if self.cluster is not None:
                await self.cluster.leave()
            self._started = False
        self.store.close()

    async def __aenter__(self) -> Backstate:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- instances ------------------------------------------------------------------------

    async def create(
        self,
        machine: str,
        name: str,
        *,
        context: dict[str, Any] | None = None,
        input: Any = None,
        version: str | None = None,
        auth: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> InstanceState:
        """``idempotency_key``: made again with the same key and arguments (within the
        retention), answered as the first time without creating anything (see
        _idempotency)."""
        key = (check_machine(machine), check_name("instance", name))
        self.registry.get(machine, version)
        if context is not None and not isinstance(context, dict):
            raise InvalidRequest("invalid-json", "context must be a JSON object")
        encode(context, "context")
        encode(input, "input")
        work = Work(
            "create",
            {},
            future=self._future(),
            auth=auth,
            create={"context": context, "input": input, "version": version},
            idempotency=idempotency(
                idempotency_key, {"context": context, "input": input, "version": version}
            ),
        )
        self.processor.submit(key, work)
        assert work.future is not None
        state = await work.future
        if work.unhandled is None:
            return state
        return dataclasses.replace(state, no_transition=work.unhandled)

    async def send(
        self,
        machine: str,
        name: str,
        event: Any,
        *,
        auth: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> InstanceState:
        """``idempotency_key``: sent again with the same key and event (within the
        retention), answered as the first time without applying it again."""
        key = (check_machine(machine), check_name("instance", name))
        try:
            ev = to_event(event)
        except ExecutionError as exc:
            raise InvalidRequest("invalid-event", exc.message) from exc
        text = encode(ev, "event")
        if (len(text) if text.isascii() else len(text.encode())) > MAX_EVENT_BYTES:
            raise InvalidRequest(
                "event-too-large", f"events are limited to {MAX_EVENT_BYTES} bytes of JSON"
            )
        check_event_type(ev["type"])
        work = Work(
            "api",
            ev,
            future=self._future(),
            auth=auth,
            event_json=RawJson(text),
            idempotency=idempotency(idempotency_key, ev),
        )
        self.processor.submit(key, work)
        assert work.future is not None
        state = await work.future
        if work.unhandled is None:
            return state
        return dataclasses.replace(state, no_transition=work.unhandled)

    async def get(
        self, machine: str, name: str, *, auth: dict[str, Any] | None = None
    ) -> InstanceState:
        state = await self.processor.get((check_machine(machine), check_name("instance", name)))
        if auth is not None:
            await self.check_read(machine, name, state, auth)
        return state

    async def check_read(
        self, machine: str, name: str, state: InstanceState, auth: dict[str, Any]
    ) -> None:
        """Whether the machine's ``allow_read`` lets ``auth`` read ``state``: raises
        ``Forbidden`` (``rejected-by-machine-authorizer``, or ``authorizer-failed`` when
        the authorizer raised) unless it does."""
        version = self.registry.get(machine, state.version)
        if not await self.processor.code.may_read(version, name, state.context, state.value, auth):
            raise Forbidden("rejected-by-machine-authorizer", f"{machine}/{name} refused this read")

    @overload
    def subscribe(
        self, machine: str, name: str, *, progress: Literal[False] = False
    ) -> AsyncIterator[InstanceState]: ...

    @overload
    def subscribe(
        self, machine: str, name: str, *, progress: Literal[True]
    ) -> AsyncIterator[InstanceState | Progress]: ...

    async def subscribe(
        self, machine: str, name: str, *, progress: bool = False
    ) -> AsyncIterator[InstanceState | Progress]:
        """The current state, then every committed state after it; with ``progress``,
        also what its running services publish (``Progress``) as it comes."""
        key = (check_machine(machine), check_name("instance", name))
        entry = self.processor.entry(key)
        if entry is None or entry.committed is None:
            raise NotFound("instance-not-found", f"no instance {machine}/{name}")
        queue: asyncio.Queue[InstanceState] = asyncio.Queue()
        entry.subscribers.add(queue)
        try:
            yield entry.committed
            while True:
                item = await queue.get()
                if progress or isinstance(item, InstanceState):
                    yield item
        finally:
            entry.subscribers.discard(queue)

    def on_emit(self, listener: Callable[[tuple[str, str], dict[str, Any]], None]) -> None:
        """Call ``listener((machine, instance), event)`` for every emitted event."""
        self.processor.emit_listeners.append(listener)

    async def history(
        self, machine: str, name: str, *, after: int = -1, limit: int = 100
    ) -> list[HistoryRow]:
        return await asyncio.to_thread(self.store.history, (machine, name), after, limit)

    async def list_instances(
        self, machine: str, *, after: str | None = None, limit: int = 100
    ) -> list[InstanceRow]:
        return await asyncio.to_thread(self.store.list_instances, machine, after, limit)

    async def pause(self, machine: str, name: str) -> InstanceState:
        """Reject API events and hold timers and messages until ``resume``."""
        return await self._administer("pause", machine, name)

    async def resume(self, machine: str, name: str) -> InstanceState:
        return await self._administer("resume", machine, name)

    async def delete(self, machine: str, name: str) -> None:
        """Remove the instance's snapshot, history, timers, inbox and pending effects."""
        await self._administer("delete", machine, name)

    async def _administer(self, kind: str, machine: str, name: str) -> InstanceState:
        key = (check_machine(machine), check_name("instance", name))
        work = Work(kind, {}, future=self._future())
        self.processor.submit(key, work)
        assert work.future is not None
        state = await work.future
        if work.unhandled is None:
            return state
        return dataclasses.replace(state, no_transition=work.unhandled)

    # -- upgrades and indexes ---------------------------------------------------------------

    async def set_desired_version(
        self, machine: str, name: str, version: str, *, now: bool = False
    ) -> InstanceState:
        """Upgrade the instance to ``version`` at its next event (or at once with ``now``,
        if it is settled). Raises ``NoMigrationPath`` (400 no-migration-path) unless a
        chain of migrations leads there."""
        key = (check_machine(machine), check_name("instance", name))
        work = Work("desire", {}, future=self._future(), create={"version": version, "now": now})
        self.processor.submit(key, work)
        assert work.future is not None
        state = await work.future
        if work.unhandled is None:
            return state
        return dataclasses.replace(state, no_transition=work.unhandled)

    async def dry_run_upgrade(self, machine: str, name: str, version: str) -> UpgradeReport:
        """Replay the instance's history since it reached its current version against
        ``version`` (after migrating its starting state) and report the first transition
        whose migrated old result differs from the new version's result."""
        state = await self.get(machine, name)
        rows: list[HistoryRow] = []
        while True:
            page = await self.history(machine, name, after=rows[-1].seq if rows else -1, limit=1000)
            rows.extend(page)
            if len(page) < 1000:
                break
        source = self.registry.get(machine, state.version)
        target = self.registry.get(machine, version)
        chain = upgrade_path(self.registry.migrations(machine), source, target)
        report = await self.processor.code.dry_run(source, target, chain, name, rows)
        upgraded = await self.processor.code.upgrade(source, target, chain, name, state.snapshot)
        # From the store, which has every node's timers (a scan: dry runs are rare).
        pending = {
            row.key: row.due
            for row in await asyncio.to_thread(self.store.pending_timers)
            if (row.machine, row.instance) == (machine, name) and row.key.startswith(AFTER)
        }
        before = set(state.snapshot.active_ids)
        plan = plan_timers(pending, before, upgraded.timers, self.clock.now_ms())
        report.timers = plan.warnings()
        return report

    async def query(
        self,
        machine: str,
        index: str,
        *,
        op: str | None = None,
        value: str | float | None = None,
        descending: bool = False,
        limit: int = 100,
        cursor: str | None = None,
    ) -> IndexPage:
        """One page of a secondary index (see docs/runtime.md#indexes)."""
        query = index_query(check_machine(machine), index, op, value, descending, limit, cursor)

        def read() -> list[IndexHit]:
            for row in self.store.index_backfills(machine):
                if row.name == index and row.state != "ready":
                    raise Conflict("index-not-ready", _not_ready(row))
            return self.store.query_index(query)

        return IndexPage(await asyncio.to_thread(read), limit)

    async def add_index(
        self, machine: str, name: str, selector: str, *, known: bool = False
    ) -> IndexBackfillRow:
        """Add an index to a deployed machine: transitions index it from now on, and
        a background task indexes the instances that exist (see _backfill). Queries
        answer 409 ``index-not-ready`` until it is done. ``index-exists`` (409) if the
        machine or one of its versions already has an index of that name, except an
        added index whose backfill failed, added again with the same selector: its
        backfill starts again from the instance that failed (once that instance is
        mended or deleted). ``known``: the caller vouches that the machine exists,
        deployed or not (a server's machine that has no version yet)."""
        check_machine(machine)
        check_name("index", name)
        (spec,) = compile_selectors({name: selector})
        if not known and machine not in self.registry.machines:
            raise NotFound("machine-not-found", f"machine {machine!r} is not deployed")
        exists = f"machine {machine!r} already has an index {name!r}"
        if name in self.registry.version_index_names(machine):
            raise Conflict("index-exists", exists)
        # The store judges an added index of that name, in the same transaction: None
        # unless it failed and has this selector (then it is retried).
        row = await asyncio.to_thread(self.store.add_index, machine, name, selector)
        if row is None:
            raise Conflict("index-exists", exists)
        self.registry.add_index(machine, spec)
        self.backfill.wake()
        return row

    async def added_indexes(self, machine: str) -> list[IndexBackfillRow]:
        """The indexes added to a machine, with their backfills' progress."""
        return await asyncio.to_thread(self.store.index_backfills, check_machine(machine))

    async def drop_indexes(self, machine: str) -> None:
        """Forget the indexes added to a machine (when it is deleted)."""
        await asyncio.to_thread(self.store.drop_indexes, check_machine(machine))
        self.registry.drop_indexes(machine)

    async def dead_letters(self, limit: int = 100) -> list[DeadLetterRow]:
        return await asyncio.to_thread(self.store.dead_letters, limit)

    async def redeliver(self, dead_letter_id: int) -> None:
        rows = [r for r in await self.dead_letters(10_000) if r.id == dead_letter_id]
        if not rows:
            raise NotFound("dead-letter-not-found", f"no dead letter {dead_letter_id}")
        await self.processor.redeliver(rows[0])

    async def logs(
        self,
        *,
        since: int = 0,
        until: int | None = None,
        machine: str | None = None,
        instance: str | None = None,
        limit: int = 100,
        version: str | None = None,
        namespace: str | None = None,
    ) -> list[LogRow]:
        end = until if until is not None else 2**62
        return await asyncio.to_thread(
            lambda: self.store.logs(
                since, end, machine, instance, limit, version=version, namespace=namespace
            )
        )

    def _future(self) -> asyncio.Future[InstanceState]:
        if not self._started:
            raise Unavailable("not-started", "call `await backstate.start()` first")
        return asyncio.get_running_loop().create_future()


def _not_ready(row: IndexBackfillRow) -> str:
    if row.state == "failed":
        return f"index {row.name!r} could not be backfilled: {row.error}"
    return (
        f"index {row.name!r} is still backfilling ({row.done} of {row.total} instances); "
        "query it once it is ready"
    )
