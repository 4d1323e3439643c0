"""``Client``: the API, blocking, over ``httpx.Client``.

Each method runs a flow from ``_api`` (``AsyncClient`` runs the same flows). Instance
subscriptions use the asyncio /rt connection of ``_socket`` on a background event loop
(a daemon thread started by the first ``subscribe``), so reconnecting lives in one place.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, cast, overload

import httpx

from . import _api
from ._api import ContextSource, InstanceStatus, QueryOp
from ._auth import DEFAULT_API_HOST, Auth, supplier, token_error, token_flow
from ._base import DEFAULT_PING_INTERVAL_S, DEFAULT_RETRIES, DEFAULT_TIMEOUT, BaseClient
from ._calls import Call, Flow, run_sync
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


class Client(BaseClient):
    """The API, blocking. Use it as ``with Client(...) as client:``, or call
    ``client.close()`` when done. Safe to share between threads."""

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
        http_client: httpx.Client | None = None,
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
        self._http = http_client or httpx.Client(timeout=timeout)
        self._owns_http = http_client is None
        self._token_lock = threading.Lock()
        self._realtime_lock = threading.Lock()
        self._realtime: tuple[_LoopThread, RealtimeConnection] | None = None
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

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the realtime socket (and its thread) and, unless given, the HTTP client."""
        with self._realtime_lock:
            realtime, self._realtime = self._realtime, None
        if realtime is not None:
            loop, connection = realtime
            loop.run(connection.close())
            loop.close()
        if self._owns_http:
            self._http.close()

    def upload_code(self, upload: ProvisionalUpload, code: str | bytes) -> None:
        """Upload a provisional version's or migration's code (step two of three)."""
        self._run(_api.upload_code(upload, code))

    @property
    def realtime_connections(self) -> int:
        """/rt sockets opened so far; each after the first is a reconnect."""
        return self._realtime[1].connections if self._realtime is not None else 0

    # -- transport ---------------------------------------------------------------------------

    def _run(self, flow: Flow[T]) -> T:
        return run_sync(flow, self._execute)

    def _execute(self, call: Call[Any]) -> Any:
        if call.pause_s:
            time.sleep(call.pause_s)
        token = self._token() if call.authenticated else None
        try:
            response = self._http.request(**self._request(call, token))
        except httpx.TransportError as error:
            raise Unreachable(f"{call.method} {call.path}: {error!r}") from error
        return call.result(response.status_code, response.content)

    def _token(self, fresh: bool = False) -> str | None:
        if self.auth is None:
            return None
        with self._token_lock:
            token = None if fresh else self._tokens.current(time.time())
            if token is not None:
                return token
            try:
                source = supplier(self.auth)
                supplied = source() if source is not None else None
                token = self._run(token_flow(self.auth, supplied, time.time()))
            except Exception as error:
                raise token_error(error) from error
            return self._tokens.store(token, time.time())

    async def _token_off_loop(self, fresh: bool) -> str | None:
        return await asyncio.to_thread(self._token, fresh)

    def _connection(self) -> tuple[_LoopThread, RealtimeConnection]:
        with self._realtime_lock:
            if self._realtime is None:
                self._realtime = (
                    _LoopThread(),
                    RealtimeConnection(
                        self._realtime_url,
                        self._token_off_loop,
                        backoff=self.reconnect_backoff,
                        ping_interval_s=self.ping_interval_s,
                    ),
                )
            return self._realtime


class _LoopThread:
    """An asyncio event loop on a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="backstate-realtime", daemon=True
        )
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self.loop.is_closed():
            coroutine.close()
            raise RuntimeError("the client is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def call(self, function: Callable[[], T]) -> T:
        async def call() -> T:
            return function()

        return self.run(call())

    def close(self) -> None:
        self.run(self.loop.shutdown_default_executor())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class _Namespace:
    def __init__(self, client: Client) -> None:
        self._client = client

    def _run(self, flow: Flow[T]) -> T:
        return self._client._run(flow)


class Machines(_Namespace):
    def list(self, *, cursor: str | None = None) -> Page[MachineInfo]:
        """A page of the org's machines."""
        return self._run(_api.list_machines(cursor))

    def get(self, machine: str) -> MachineInfo:
        return self._run(_api.get_machine(machine))

    def create(self, machine: str, *, indexes: Sequence[str] | None = None) -> None:
        """A machine with no version yet (instances need one: ``machine_versions.create``)."""
        self._run(_api.create_machine(machine, indexes))

    def delete(self, machine: str, *, danger_data_will_be_deleted_forever: Literal[True]) -> None:
        """Delete a machine with its versions and migrations (``Conflict`` while it has
        instances). The client computes State Backed's HMAC confirmation."""
        self._run(_api.delete_machine(machine, danger_data_will_be_deleted_forever))


class MachineVersions(_Namespace):
    def list(self, machine: str, *, cursor: str | None = None) -> Page[MachineVersionInfo]:
        return self._run(_api.list_versions(machine, cursor))

    def create(
        self,
        machine: str,
        code: str,
        *,
        client_info: str | None = None,
        make_current: bool = True,
        index_selectors: Mapping[str, str] | None = None,
    ) -> str:
        """A version from a machine file's Python source, in one request (backstate's
        upload); its id. ``client_info`` is your own reference (a semver, a git sha)."""
        return self._run(
            _api.create_version(machine, code, client_info, make_current, index_selectors)
        )

    def provisionally_create(self, machine: str, *, gzip: bool = False) -> ProvisionalUpload:
        """Step one of State Backed's three: reserve a version; then ``client.upload_code``
        and ``finalize``."""
        return self._run(_api.provisionally_create_version(machine, gzip))

    def finalize(
        self,
        machine: str,
        signed_version_id: str,
        *,
        client_info: str | None = None,
        make_current: bool = True,
        index_selectors: Mapping[str, str] | None = None,
    ) -> str:
        """Step three: the version's id."""
        return self._run(
            _api.finalize_version(
                machine, signed_version_id, client_info, make_current, index_selectors
            )
        )


class Indexes(_Namespace):
    """Indexes of a machine; adding one to a machine with instances backfills them in
    the background (backstate's extension; see docs/client.md#indexes)."""

    def add(self, machine: str, name: str, selector: str) -> IndexInfo:
        """Add an index (a name and a selector: JSONPath into the context, or
        ``@state``); it is ``backfilling`` until every existing instance is indexed."""
        return self._run(_api.add_index(machine, name, selector))

    def list(self, machine: str) -> list[IndexInfo]:
        return self._run(_api.list_indexes(machine))

    def get(self, machine: str, name: str) -> IndexInfo:
        """One index, with its backfill's progress."""
        return self._run(_api.get_index(machine, name))

    def wait_ready(
        self, machine: str, name: str, *, timeout: float = 600.0, interval: float = 0.5
    ) -> IndexInfo:
        """Poll until the index is no longer backfilling (``ready`` or ``failed``);
        ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            index = self._run(_api.get_index(machine, name))
            if index.state != "backfilling":
                return index
            if time.monotonic() > deadline:
                raise TimeoutError(f"index {name!r} still backfilling: {index.done}/{index.total}")
            time.sleep(interval)


class Migrations(_Namespace):
    def create(
        self,
        machine: str,
        from_version_id: str,
        to_version_id: str,
        code: str | bytes,
        *,
        gzip: bool = False,
    ) -> str:
        """A migration between two versions (all three steps); its id."""
        return self._run(_api.create_migration(machine, from_version_id, to_version_id, code, gzip))

    def provisionally_create(
        self, machine: str, from_version_id: str, to_version_id: str, *, gzip: bool = False
    ) -> ProvisionalUpload:
        return self._run(
            _api.provisionally_create_migration(machine, from_version_id, to_version_id, gzip)
        )

    def finalize(self, machine: str, signed_migration_id: str) -> str:
        return self._run(_api.finalize_migration(machine, signed_migration_id))

    def list(self, machine: str) -> list[MigrationInfo]:
        """A machine's migrations, oldest first (without their code)."""
        return self._run(_api.list_migrations(machine))

    def get(self, machine: str, migration_id: str) -> MigrationInfo:
        """One migration, with its code."""
        return self._run(_api.get_migration(machine, migration_id))

    def delete(self, machine: str, migration_id: str) -> None:
        """Delete a migration (upgrades no longer use it): how a wrong one is replaced,
        since a second upload between the same versions is refused (``migration-exists``)."""
        return self._run(_api.delete_migration(machine, migration_id))


class Instances(_Namespace):
    def create(
        self,
        machine: str,
        instance: str,
        *,
        context: Mapping[str, Any] | None = None,
        machine_version_id: str | None = None,
        idempotency_key: str | None = None,
        input: Any = None,
    ) -> State:
        """Create an instance (on the current version unless given) and wait for it to
        settle; ``Conflict`` if it exists (but not when it was this create, repeated
        under its ``idempotency_key``)."""
        return self._run(
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

    def get(self, machine: str, instance: str) -> State:
        return self._run(_api.get_instance(machine, instance))

    def get_or_create(
        self,
        machine: str,
        instance: str,
        *,
        context: ContextSource = None,
        machine_version_id: str | None = None,
    ) -> State:
        """Get the instance, creating it if missing (safe against a concurrent create).
        ``context`` may be a function, called only when creating."""
        return self._run(
            _api.get_or_create_instance(
                machine, instance, context, machine_version_id, self._client.retries
            )
        )

    def send_event(
        self, machine: str, instance: str, event: Event, *, idempotency_key: str | None = None
    ) -> State:
        """Send an event (a type, or ``{"type": ..., **payload}``); the settled state.
        Under ``idempotency_key`` (else a key of the client's own when it may retry) it
        is applied once however often it is sent."""
        return self._run(
            _api.send_event(machine, instance, event, idempotency_key, self._client.retries)
        )

    def list(self, machine: str, *, cursor: str | None = None) -> Page[InstanceInfo]:
        return self._run(_api.list_instances(machine, cursor))

    def query(
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
        """Instances by an index value (``op`` and ``value`` together; neither: all)."""
        return self._run(_api.query_index(machine, index, op, value, direction, limit, cursor))

    def list_transitions(
        self, machine: str, instance: str, *, cursor: str | None = None
    ) -> Page[Transition]:
        return self._run(_api.list_transitions(machine, instance, cursor))

    def timers(self, machine: str, instance: str) -> builtins.list[Timer]:
        """The instance's pending timers, soonest first (``instances.admin``)."""
        return self._run(_api.list_timers(machine, instance))

    def get_admin(self, machine: str, instance: str) -> AdminState:
        """The whole context, status and versions (``instances.admin``; no authorizer)."""
        return self._run(_api.get_admin_instance(machine, instance))

    def set_status(self, machine: str, instance: str, status: InstanceStatus) -> None:
        """Pause (every event is refused, timers too) or resume an instance."""
        self._run(_api.set_status(machine, instance, status))

    def set_desired_version(
        self, machine: str, instance: str, version_id: str, *, upgrade_now: bool = False
    ) -> None:
        """Upgrade the instance at its next settled event, or with ``upgrade_now`` (our
        extension) at once if it is settled; ``NoMigrationPath`` if no chain of
        migrations leads there."""
        self._run(_api.set_desired_version(machine, instance, version_id, upgrade_now))

    def dry_run_upgrade(self, machine: str, instance: str, version_id: str) -> UpgradeReport:
        """Replay the instance's history against a version (our extension); nothing
        changes."""
        return self._run(_api.dry_run_upgrade(machine, instance, version_id))

    def delete(
        self, machine: str, instance: str, *, danger_data_will_be_deleted_forever: Literal[True]
    ) -> None:
        """Delete the instance, its history, timers and pending upgrade."""
        self._run(_api.delete_instance(machine, instance, danger_data_will_be_deleted_forever))

    @overload
    def subscribe(
        self, machine: str, instance: str, *, progress: Literal[False] = False
    ) -> Subscription[State]: ...
    @overload
    def subscribe(
        self, machine: str, instance: str, *, progress: Literal[True]
    ) -> Subscription[State | Progress]: ...
    def subscribe(
        self, machine: str, instance: str, *, progress: bool = False
    ) -> Subscription[Any]:
        """The instance's states as they change, starting with the current one; with
        ``progress``, also the ``Progress`` its running services publish (backstate's
        extension), in order between the states."""
        return Subscription(self._client, machine, instance, progress)


class Subscription(Generic[Item]):
    """An instance's states, from the client's shared /rt socket: ``for state in sub``
    (or ``sub.get(timeout)``), ``sub.latest``; ``sub.close()`` or ``with`` to unsubscribe.
    Iterating raises the ``ApiError`` that ended the subscription
    (``RejectedByMachineAuthorizer``, ``NotFound``, ...). Subscribed with ``progress``,
    it yields ``Progress`` too (``latest`` is still the latest state)."""

    def __init__(self, client: Client, machine: str, instance: str, progress: bool) -> None:
        self.machine = machine
        self.instance = instance
        self._loop, self._connection = client._connection()
        self._queue: queue.Queue[State | Progress | ApiError | None] = queue.Queue()
        self._closed = False
        self._watch: Watch = self._loop.call(
            lambda: self._connection.add(machine, instance, self._queue.put, progress)
        )

    @property
    def latest(self) -> State | None:
        return self._watch.latest

    @property
    def connected(self) -> bool:
        return self._watch.connected

    def get(self, timeout: float | None = None) -> Item:
        """The next state (or progress); ``TimeoutError`` if none comes within ``timeout``
        seconds."""
        if self._closed and self._queue.empty():
            raise RuntimeError("the subscription is closed")
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no state within {timeout} s") from None
        if item is None:
            raise RuntimeError("the subscription is closed")
        if isinstance(item, ApiError):
            self._queue.put(item)
            raise item
        return cast(Item, item)

    def __iter__(self) -> Iterator[Item]:
        return self

    def __next__(self) -> Item:
        try:
            return self.get()
        except RuntimeError:
            raise StopIteration from None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(RuntimeError):  # the client was closed first
                self._loop.call(lambda: self._connection.remove(self._watch))
            self._queue.put(None)

    def __enter__(self) -> Subscription[Item]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LogsApi(_Namespace):
    def retrieve(
        self,
        start: datetime,
        *,
        to: datetime | None = None,
        machine: str | None = None,
        instance: str | None = None,
        version_id: str | None = None,
    ) -> Logs:
        """Up to 100 entries from ``start``; ask again from ``max_timestamp`` for more."""
        return self._run(_api.retrieve_logs(start, to, machine, instance, version_id))

    def watch(
        self,
        start: datetime,
        *,
        to: datetime | None = None,
        machine: str | None = None,
        instance: str | None = None,
        version_id: str | None = None,
        poll_interval_s: float = 30.0,
    ) -> Iterator[LogEntry]:
        """Every entry from ``start`` on, polling when caught up; endless without ``to``."""
        cursor = _api.LogCursor(
            start, to=to, machine=machine, instance=instance, version_id=version_id
        )
        while not cursor.finished(datetime.now(UTC)):
            yield from cursor.accept(self._run(cursor.fetch()))
            if cursor.caught_up and not cursor.finished(datetime.now(UTC)):
                time.sleep(poll_interval_s)


class DeadLetters(_Namespace):
    """Messages between instances that exhausted their retries (backstate's extension;
    ``instances.admin``)."""

    def list(self) -> list[DeadLetter]:
        """The org's dead letters, oldest first (at most 100)."""
        return self._run(_api.list_dead_letters())

    def redeliver(self, dead_letter_id: int) -> None:
        """Back into its instance's inbox, and off the list."""
        self._run(_api.redeliver_dead_letter(dead_letter_id))


class Secrets(_Namespace):
    """The org's secrets, for its machines' custom actions and services (backstate's
    extension; ``org.secrets.admin``). Values are write-only: nothing reads them back."""

    def list(self) -> list[str]:
        """The names of the org's secrets."""
        return self._run(_api.list_secrets())

    def set(self, name: str, value: str) -> None:
        self._run(_api.set_secret(name, value))

    def delete(self, name: str) -> None:
        self._run(_api.delete_secret(name))


class Orgs(_Namespace):
    def list(self, *, cursor: str | None = None) -> Page[OrgInfo]:
        return self._run(_api.list_orgs(cursor))

    def create(self, name: str, *, allow_anonymous_access: bool = True) -> CreatedOrg:
        """A new org (with its admin key, shown once)."""
        return self._run(_api.create_org(name, allow_anonymous_access))


class Keys(_Namespace):
    def list(self, *, cursor: str | None = None) -> Page[KeyInfo]:
        return self._run(_api.list_keys(cursor))

    def create(
        self,
        name: str,
        *,
        scopes: Sequence[str] | None = None,
        use: Literal["production", "ci"] | None = None,
    ) -> CreatedKey:
        """A key with ``scopes``, or a preset ``use``; its secret is shown only once."""
        return self._run(_api.create_key(name, scopes, use))

    def delete(self, key_id: str) -> None:
        self._run(_api.delete_key(key_id))


class IdentityProviders(_Namespace):
    def list(self, *, cursor: str | None = None) -> Page[IdentityProviderInfo]:
        return self._run(_api.list_identity_providers(cursor))

    def upsert(
        self,
        *,
        algs: Sequence[str],
        mapping: Mapping[str, Any],
        aud: str | None = None,
        iss: str | None = None,
        key: bytes | None = None,
        jwks_url: str | None = None,
    ) -> None:
        """Trust an IdP's tokens for exchange (keyed by ``aud``/``iss``). ``key``: the raw
        HMAC secret or PEM/JWK bytes (sent base64url), or give ``jwks_url``."""
        self._run(_api.upsert_identity_provider(algs, mapping, aud, iss, key, jwks_url))

    def delete(self, *, aud: str | None = None, iss: str | None = None) -> None:
        self._run(_api.delete_identity_provider(aud, iss))


class TokenProviders(_Namespace):
    def list(self, *, cursor: str | None = None) -> Page[TokenProviderInfo]:
        return self._run(_api.list_token_providers(cursor))

    def upsert(self, service: str, *, key_id: str, mapping: Mapping[str, Any]) -> None:
        """Sign exchanged tokens for ``service`` with key ``key_id``; ``mapping`` makes
        their ``act`` claims from the IdP's mapped claims."""
        self._run(_api.upsert_token_provider(service, key_id, mapping))

    def delete(self, service: str) -> None:
        self._run(_api.delete_token_provider(service))


class Tokens(_Namespace):
    def exchange(self, org_id: str, service: str, token: str) -> str:
        """RFC 8693 token exchange: an IdP's token for a backstate token."""
        return self._run(_api.exchange_token(org_id, service, token))
