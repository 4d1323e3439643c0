"""``AsyncClient``: the API on asyncio, over ``httpx.AsyncClient`` and ``websockets``.

Its namespaces have the same methods as ``Client``'s (see ``_sync.py`` for what each
does), awaited; each one runs a flow from ``_api``.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, cast, overload

import httpx

from . import _api
from ._api import ContextSource, InstanceStatus, QueryOp
from ._auth import DEFAULT_API_HOST, Auth, supplier, token_error, token_flow
from ._base import DEFAULT_PING_INTERVAL_S, DEFAULT_RETRIES, DEFAULT_TIMEOUT, BaseClient
from ._calls import Call, Flow, run_async
from ._errors import ApiError, Unreachable
from ._models import (
    AdminState,
    CreatedKey,
    CreatedOrg,
    DeadLetter,
    Event,
    IdentityProviderInfo,
    IndexEntry,
    IndexInfo,
    IndexValue,
    InstanceInfo,
    KeyInfo,
    LogEntry,
    Logs,
    MachineInfo,
    MachineVersionInfo,
    MigrationInfo,
    OrgInfo,
    Page,
    Progress,
    ProvisionalUpload,
    State,
    Timer,
    TokenProviderInfo,
    Transition,
    UpgradeReport,
)
from ._realtime import Backoff, Watch
from ._socket import RealtimeConnection

T = TypeVar("T")
Item = TypeVar("Item")  # what a subscription yields: State, or State | Progress


class AsyncClient(BaseClient):
    """The API, asynchronously. Use it as ``async with AsyncClient(...) as client:``, or
    ``await client.aclose()`` when done."""

    def __init__(
        self,
        api_host: str = DEFAULT_API_HOST,
        *,
        auth: Auth | None = None,
        org_id: str | None = None,
        act_as: Mapping[str, Any] | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        reconnect_backoff: Backoff | None = None,
        ping_interval_s: float = DEFAULT_PING_INTERVAL_S,
        retries: int = DEFAULT_RETRIES,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            api_host,
            auth=auth,
            org_id=org_id,
            act_as=act_as,
            timeout=timeout,
            reconnect_backoff=reconnect_backoff,
            ping_interval_s=ping_interval_s,
            retries=retries,
        )
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._owns_http = http_client is None
        self._token_lock = asyncio.Lock()
        self._realtime: RealtimeConnection | None = None
        self.machines = Machines(self)
        self.machine_versions = MachineVersions(self)
        self.migrations = Migrations(self)
        self.indexes = Indexes(self)
        self.instances = Instances(self)
        self.logs = LogsApi(self)
        self.dead_letters = DeadLetters(self)
        self.secrets = Secrets(self)
        self.orgs = Orgs(self)
        self.keys = Keys(self)
        self.identity_providers = IdentityProviders(self)
        self.token_providers = TokenProviders(self)
        self.tokens = Tokens(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the realtime socket and, unless it was given, the HTTP client."""
        if self._realtime is not None:
            await self._realtime.close()
        if self._owns_http:
            await self._http.aclose()

    async def upload_code(self, upload: ProvisionalUpload, code: str | bytes) -> None:
        """Upload a provisional version's or migration's code (step two of three)."""
        await self._run(_api.upload_code(upload, code))

    @property
    def realtime_connections(self) -> int:
        """/rt sockets opened so far; each after the first is a reconnect."""
        return self._realtime.connections if self._realtime is not None else 0

    # -- transport ---------------------------------------------------------------------------

    async def _run(self, flow: Flow[T]) -> T:
        return await run_async(flow, self._execute)

    async def _execute(self, call: Call[Any]) -> Any:
        if call.pause_s:
            await asyncio.sleep(call.pause_s)
        token = await self._token() if call.authenticated else None
        try:
            response = await self._http.request(**self._request(call, token))
        except httpx.TransportError as error:
            raise Unreachable(f"{call.method} {call.path}: {error!r}") from error
        return call.result(response.status_code, response.content)

    async def _token(self, fresh: bool = False) -> str | None:
        if self.auth is None:
            return None
        async with self._token_lock:
            token = None if fresh else self._tokens.current(time.time())
            if token is not None:
                return token
            try:
                source = supplier(self.auth)
                supplied = source() if source is not None else None
                if inspect.isawaitable(supplied):
                    supplied = await supplied
                token = await self._run(token_flow(self.auth, supplied, time.time()))
            except Exception as error:
                raise token_error(error) from error
            return self._tokens.store(token, time.time())

    def _connection(self) -> RealtimeConnection:
        if self._realtime is None:
            self._realtime = RealtimeConnection(
                self._realtime_url,
                self._token,
                backoff=self.reconnect_backoff,
                ping_interval_s=self.ping_interval_s,
            )
        return self._realtime


class _Namespace:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def _run(self, flow: Flow[T]) -> T:
        return await self._client._run(flow)


class Machines(_Namespace):
    async def list(self, *, cursor: str | None = None) -> Page[MachineInfo]:
        return await self._run(_api.list_machines(cursor))

    async def get(self, machine: str) -> MachineInfo:
        return await self._run(_api.get_machine(machine))

    async def create(self, machine: str, *, indexes: Sequence[str] | None = None) -> None:
        await self._run(_api.create_machine(machine, indexes))

    async def delete(
        self, machine: str, *, danger_data_will_be_deleted_forever: Literal[True]
    ) -> None:
        await self._run(_api.delete_machine(machine, danger_data_will_be_deleted_forever))


class MachineVersions(_Namespace):
    async def list(self, machine: str, *, cursor: str | None = None) -> Page[MachineVersionInfo]:
        return await self._run(_api.list_versions(machine, cursor))

    async def create(
        self,
        machine: str,
        code: str,
        *,
        client_info: str | None = None,
        make_current: bool = True,
        index_selectors: Mapping[str, str] | None = None,
    ) -> str:
        return await self._run(
            _api.create_version(machine, code, client_info, make_current, index_selectors)
        )

    async def provisionally_create(self, machine: str, *, gzip: bool = False) -> ProvisionalUpload:
        return await self._run(_api.provisionally_create_version(machine, gzip))

    async def finalize(
        self,
        machine: str,
        signed_version_id: str,
        *,
        client_info: str | None = None,
        make_current: bool = True,
        index_selectors: Mapping[str, str] | None = None,
    ) -> str:
        return await self._run(
            _api.finalize_version(
                machine, signed_version_id, client_info, make_current, index_selectors
            )
        )


class Indexes(_Namespace):
    """Indexes of a machine; adding one to a machine with instances backfills them in
    the background (backstate's extension; see docs/client.md#indexes)."""

    async def add(self, machine: str, name: str, selector: str) -> IndexInfo:
        """Add an index (a name and a selector: JSONPath into the context, or
        ``@state``); it is ``backfilling`` until every existing instance is indexed."""
        return await self._run(_api.add_index(machine, name, selector))

    async def list(self, machine: str) -> list[IndexInfo]:
        return await self._run(_api.list_indexes(machine))

    async def get(self, machine: str, name: str) -> IndexInfo:
        """One index, with its backfill's progress."""
        return await self._run(_api.get_index(machine, name))

    async def wait_ready(
        self, machine: str, name: str, *, timeout: float = 600.0, interval: float = 0.5
    ) -> IndexInfo:
        """Poll until the index is no longer backfilling (``ready`` or ``failed``);
        ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            index = await self._run(_api.get_index(machine, name))
            if index.state != "backfilling":
                return index
            if time.monotonic() > deadline:
                raise TimeoutError(f"index {name!r} still backfilling: {index.done}/{index.total}")
            await asyncio.sleep(interval)


class Migrations(_Namespace):
    async def create(
        self,
        machine: str,
        from_version_id: str,
        to_version_id: str,
        code: str | bytes,
        *,
        gzip: bool = False,
    ) -> str:
        return await self._run(
            _api.create_migration(machine, from_version_id, to_version_id, code, gzip)
        )

    async def provisionally_create(
        self, machine: str, from_version_id: str, to_version_id: str, *, gzip: bool = False
    ) -> ProvisionalUpload:
        return await self._run(
            _api.provisionally_create_migration(machine, from_version_id, to_version_id, gzip)
        )

    async def finalize(self, machine: str, signed_migration_id: str) -> str:
        return await self._run(_api.finalize_migration(machine, signed_migration_id))

    async def list(self, machine: str) -> list[MigrationInfo]:
        """A machine's migrations, oldest first (without their code)."""
        return await self._run(_api.list_migrations(machine))

    async def get(self, machine: str, migration_id: str) -> MigrationInfo:
        """One migration, with its code."""
        return await self._run(_api.get_migration(machine, migration_id))

    async def delete(self, machine: str, migration_id: str) -> None:
        """Delete a migration (upgrades no longer use it): how a wrong one is replaced,
        since a second upload between the same versions is refused (``migration-exists``)."""
        return await self._run(_api.delete_migration(machine, migration_id))


class Instances(_Namespace):
    async def create(
        self,
        machine: str,
        instance: str,
        *,
        context: Mapping[str, Any] | None = None,
        machine_version_id: str | None = None,
        idempotency_key: str | None = None,
        input: Any = None,
    ) -> State:
        return await self._run(
            _api.create_instance(
                machine,
                instance,
                context,
                machine_version_id,
                idempotency_key,
                self._client.retries,
                input=input,
            )
        )

    async def get(self, machine: str, instance: str) -> State:
        return await self._run(_api.get_instance(machine, instance))

    async def get_or_create(
        self,
        machine: str,
        instance: str,
        *,
        context: ContextSource = None,
        machine_version_id: str | None = None,
    ) -> State:
        return await self._run(
            _api.get_or_create_instance(
                machine, instance, context, machine_version_id, self._client.retries
            )
        )

    async def send_event(
        self, machine: str, instance: str, event: Event, *, idempotency_key: str | None = None
    ) -> State:
        return await self._run(
            _api.send_event(machine, instance, event, idempotency_key, self._client.retries)
        )

    async def list(self, machine: str, *, cursor: str | None = None) -> Page[InstanceInfo]:
        return await self._run(_api.list_instances(machine, cursor))

    async def query(
        self,
        machine: str,
        index: str,
        *,
        op: QueryOp | None = None,
        value: IndexValue | None = None,
        direction: Literal["asc", "desc"] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[IndexEntry]:
        return await self._run(
            _api.query_index(machine, index, op, value, direction, limit, cursor)
        )

    async def list_transitions(
        self, machine: str, instance: str, *, cursor: str | None = None
    ) -> Page[Transition]:
        return await self._run(_api.list_transitions(machine, instance, cursor))

    async def timers(self, machine: str, instance: str) -> builtins.list[Timer]:
        """The instance's pending timers, soonest first (``instances.admin``)."""
        return await self._run(_api.list_timers(machine, instance))

    async def get_admin(self, machine: str, instance: str) -> AdminState:
        return await self._run(_api.get_admin_instance(machine, instance))

    async def set_status(self, machine: str, instance: str, status: InstanceStatus) -> None:
        await self._run(_api.set_status(machine, instance, status))

    async def set_desired_version(
        self, machine: str, instance: str, version_id: str, *, upgrade_now: bool = False
    ) -> None:
        await self._run(_api.set_desired_version(machine, instance, version_id, upgrade_now))

    async def dry_run_upgrade(self, machine: str, instance: str, version_id: str) -> UpgradeReport:
        return await self._run(_api.dry_run_upgrade(machine, instance, version_id))

    async def delete(
        self, machine: str, instance: str, *, danger_data_will_be_deleted_forever: Literal[True]
    ) -> None:
        await self._run(
            _api.delete_instance(machine, instance, danger_data_will_be_deleted_forever)
        )

    @overload
    def subscribe(
        self, machine: str, instance: str, *, progress: Literal[False] = False
    ) -> AsyncSubscription[State]: ...
    @overload
    def subscribe(
        self, machine: str, instance: str, *, progress: Literal[True]
    ) -> AsyncSubscription[State | Progress]: ...
    def subscribe(
        self, machine: str, instance: str, *, progress: bool = False
    ) -> AsyncSubscription[Any]:
        """The instance's states as they change, starting with the current one; with
        ``progress``, also the ``Progress`` its running services publish (backstate's
        extension), in order between the states (call it with an event loop running)."""
        return AsyncSubscription(self._client._connection(), machine, instance, progress)


class AsyncSubscription(Generic[Item]):
    """An instance's states, from the shared /rt socket: ``async for state in sub``
    (or ``await sub.get(timeout)``), ``sub.latest``; ``await sub.aclose()`` or
    ``async with`` to unsubscribe. Iterating raises the ``ApiError`` that ended the
    subscription (``RejectedByMachineAuthorizer``, ``NotFound``, ...). Subscribed with
    ``progress``, it yields ``Progress`` too (``latest`` is still the latest state)."""

    def __init__(
        self, connection: RealtimeConnection, machine: str, instance: str, progress: bool
    ) -> None:
        self.machine = machine
        self.instance = instance
        self._connection = connection
        self._queue: asyncio.Queue[State | Progress | ApiError | None] = asyncio.Queue()
        self._closed = False
        self._watch: Watch = connection.add(machine, instance, self._queue.put_nowait, progress)

    @property
    def latest(self) -> State | None:
        return self._watch.latest

    @property
    def connected(self) -> bool:
        return self._watch.connected

    async def get(self, timeout: float | None = None) -> Item:
        """The next state (or progress); ``TimeoutError`` if none comes within ``timeout``
        seconds."""
        if self._closed and self._queue.empty():
            raise RuntimeError("the subscription is closed")
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if item is None:
            raise RuntimeError("the subscription is closed")
        if isinstance(item, ApiError):
            self._queue.put_nowait(item)
            raise item
        return cast(Item, item)

    def __aiter__(self) -> AsyncIterator[Item]:
        return self

    async def __anext__(self) -> Item:
        try:
            return await self.get()
        except RuntimeError:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._connection.remove(self._watch)
            self._queue.put_nowait(None)

    async def __aenter__(self) -> AsyncSubscription[Item]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class LogsApi(_Namespace):
    async def retrieve(
        self,
        start: datetime,
        *,
        to: datetime | None = None,
        machine: str | None = None,
        instance: str | None = None,
        version_id: str | None = None,
    ) -> Logs:
        return await self._run(_api.retrieve_logs(start, to, machine, instance, version_id))

    async def watch(
        self,
        start: datetime,
        *,
        to: datetime | None = None,
        machine: str | None = None,
        instance: str | None = None,
        version_id: str | None = None,
        poll_interval_s: float = 30.0,
    ) -> AsyncIterator[LogEntry]:
        cursor = _api.LogCursor(
            start, to=to, machine=machine, instance=instance, version_id=version_id
        )
        while not cursor.finished(datetime.now(UTC)):
            for entry in cursor.accept(await self._run(cursor.fetch())):
                yield entry
            if cursor.caught_up and not cursor.finished(datetime.now(UTC)):
                await asyncio.sleep(poll_interval_s)


class DeadLetters(_Namespace):
    """Messages between instances that exhausted their retries (backstate's extension;
    ``instances.admin``)."""

    async def list(self) -> list[DeadLetter]:
        """The org's dead letters, oldest first (at most 100)."""
        return await self._run(_api.list_dead_letters())

    async def redeliver(self, dead_letter_id: int) -> None:
        """Back into its instance's inbox, and off the list."""
        await self._run(_api.redeliver_dead_letter(dead_letter_id))


class Secrets(_Namespace):
    """The org's secrets, for its machines' custom actions and services (backstate's
    extension; ``org.secrets.admin``). Values are write-only: nothing reads them back."""

    async def list(self) -> list[str]:
        """The names of the org's secrets."""
        return await self._run(_api.list_secrets())

    async def set(self, name: str, value: str) -> None:
        await self._run(_api.set_secret(name, value))

    async def delete(self, name: str) -> None:
        await self._run(_api.delete_secret(name))


class Orgs(_Namespace):
    async def list(self, *, cursor: str | None = None) -> Page[OrgInfo]:
        return await self._run(_api.list_orgs(cursor))

    async def create(self, name: str, *, allow_anonymous_access: bool = True) -> CreatedOrg:
        return await self._run(_api.create_org(name, allow_anonymous_access))


class Keys(_Namespace):
    async def list(self, *, cursor: str | None = None) -> Page[KeyInfo]:
        return await self._run(_api.list_keys(cursor))

    async def create(
        self,
        name: str,
        *,
        scopes: Sequence[str] | None = None,
        use: Literal["production", "ci"] | None = None,
    ) -> CreatedKey:
        return await self._run(_api.create_key(name, scopes, use))

    async def delete(self, key_id: str) -> None:
        await self._run(_api.delete_key(key_id))


class IdentityProviders(_Namespace):
    async def list(self, *, cursor: str | None = None) -> Page[IdentityProviderInfo]:
        return await self._run(_api.list_identity_providers(cursor))

    async def upsert(
        self,
        *,
        algs: Sequence[str],
        mapping: Mapping[str, Any],
        aud: str | None = None,
        iss: str | None = None,
        key: bytes | None = None,
        jwks_url: str | None = None,
    ) -> None:
        await self._run(_api.upsert_identity_provider(algs, mapping, aud, iss, key, jwks_url))

    async def delete(self, *, aud: str | None = None, iss: str | None = None) -> None:
        await self._run(_api.delete_identity_provider(aud, iss))


class TokenProviders(_Namespace):
    async def list(self, *, cursor: str | None = None) -> Page[TokenProviderInfo]:
        return await self._run(_api.list_token_providers(cursor))

    async def upsert(self, service: str, *, key_id: str, mapping: Mapping[str, Any]) -> None:
        await self._run(_api.upsert_token_provider(service, key_id, mapping))

    async def delete(self, service: str) -> None:
        await self._run(_api.delete_token_provider(service))


class Tokens(_Namespace):
    async def exchange(self, org_id: str, service: str, token: str) -> str:
        return await self._run(_api.exchange_token(org_id, service, token))
