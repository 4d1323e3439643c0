"""``Backstate``: the durable runtime as a library."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from backstate.chart import ExecutionError, Machine, to_event
from backstate.store import (
    DeadLetterRow,
    HistoryRow,
    InstanceRow,
    LogRow,
    RawJson,
    Store,
    open_store,
)

from . import _logs
from ._clock import Clock, SystemClock
from ._cluster import Cluster
from ._deployments import Authorizer, Registry, Version, check_machine, check_name
from ._entries import InstanceState, Work
from ._errors import Forbidden, InvalidRequest, NotFound, Unavailable
from ._indexes import IndexPage, compile_selectors, index_query
from ._migrations import Migration, UpgradeContext, UpgradeReport, UpgradeState, replay_upgrade
from ._processor import Processor

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
    ) -> None:
        """``cluster``: run as one of many nodes sharing a PostgreSQL store (see
        _cluster); without it this process runs every instance of the store."""
        self.store: Store = (
            open_store(store, synchronous=synchronous) if isinstance(store, str | Path) else store
        )
        self.clock = clock or SystemClock()
        self.registry = Registry()
        self.cluster = cluster
        self.processor = Processor(self.store, self.registry, self.clock, step_timeout, cluster)
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
    ) -> None:
        """Deploy a version of a machine. ``indexes`` maps index names to selectors
        (JSONPath into the context, or ``@state``); see docs/runtime.md#indexes."""
        check_machine(name)
        check_name("version", version)
        specs = compile_selectors(indexes or {})
        self.registry.add(
            Version(name, version, machine, allow_read, allow_write, specs), make_current
        )
        self.store.record_version(name, version, self.clock.now_ms())
        self.processor.deployed(name)

    def make_current(self, name: str, version: str) -> None:
        """Make a deployed version the one new instances start on."""
        self.registry.make_current(name, version)

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
        await self.processor.start()
        if self.cluster is not None:
            await self.cluster.start(self.processor)
        self._started = True

    async def close(self) -> None:
        if self._started:
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
    ) -> InstanceState:
        key = (check_machine(machine), check_name("instance", name))
        self.registry.get(machine, version)
        if context is not None and not isinstance(context, dict):
            raise InvalidRequest("invalid-json", "context must be a JSON object")
        _check_json(context, "context")
        _check_json(input, "input")
        work = Work(
            "create",
            {},
            future=self._future(),
            auth=auth,
            create={"context": context, "input": input, "version": version},
        )
        self.processor.submit(key, work)
        assert work.future is not None
        return await work.future

    async def send(
        self, machine: str, name: str, event: Any, *, auth: dict[str, Any] | None = None
    ) -> InstanceState:
        key = (check_machine(machine), check_name("instance", name))
        try:
            ev = to_event(event)
        except ExecutionError as exc:
            raise InvalidRequest("invalid-event", exc.message) from exc
        text = _check_json(ev, "event")
        if (len(text) if text.isascii() else len(text.encode())) > MAX_EVENT_BYTES:
            raise InvalidRequest(
                "event-too-large", f"events are limited to {MAX_EVENT_BYTES} bytes of JSON"
            )
        if ev["type"].startswith(("xstate.", "backstate.")):
            raise InvalidRequest("invalid-event", f"event type {ev['type']!r} is reserved")
        work = Work("api", ev, future=self._future(), auth=auth, event_json=RawJson(text))
        self.processor.submit(key, work)
        assert work.future is not None
        return await work.future

    async def get(
        self, machine: str, name: str, *, auth: dict[str, Any] | None = None
    ) -> InstanceState:
        state = await self.processor.get((check_machine(machine), check_name("instance", name)))
        if auth is not None:
            self.check_read(machine, name, state, auth)
        return state

    def check_read(
        self, machine: str, name: str, state: InstanceState, auth: dict[str, Any]
    ) -> None:
        """Raise ``Forbidden`` unless the version's ``allow_read`` lets ``auth`` read
        ``state`` (for a read, and for each update a subscriber is sent)."""
        check = self.registry.get(machine, state.version).allow_read
        if check is not None and not check(
            machine_instance_name=name,
            auth_context=auth,
            context=state.context,
            state=state.value,
        ):
            raise Forbidden("rejected-by-machine-authorizer", f"{machine}/{name} refused this read")

    async def subscribe(self, machine: str, name: str) -> AsyncIterator[InstanceState]:
        """The current state, then every committed state after it."""
        key = (check_machine(machine), check_name("instance", name))
        entry = self.processor._entry(key)
        if entry is None or entry.committed is None:
            raise NotFound("instance-not-found", f"no instance {machine}/{name}")
        queue: asyncio.Queue[InstanceState] = asyncio.Queue()
        entry.subscribers.add(queue)
        try:
            yield entry.committed
            while True:
                yield await queue.get()
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
        return await work.future

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
        return await work.future

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
        return replay_upgrade(self.registry, state, rows, version)

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
        hits = await asyncio.to_thread(self.store.query_index, query)
        return IndexPage(hits, limit)

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


def _check_json(value: Any, what: str) -> str:
    """Compact JSON text of ``value`` (``invalid-json`` unless it is JSON). orjson when
    its answer is the standard library's: it writes NaN and infinities as ``null`` and
    refuses non-string keys, so output with a ``null`` and refusals take the slow path."""
    try:
        data = orjson.dumps(value)
    except TypeError:
        data = b"null"
    if b"null" not in data:
        return data.decode()
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidRequest("invalid-json", f"{what} must be JSON: {exc}") from exc
