"""The backend behind the HTTP API: the runtime plus the control plane (orgs, keys,
machines, versions). Each org's machines run in the runtime as ``<org>.<machine>``.

Machine code runs where the backend's ``sandbox`` runs it (sandboxed workers, one set
per org: ``backstate.sandbox``), or, without one, in this process (trusted mode). In
sandboxed mode the server never imports a version's file: an upload is loaded in a
fresh worker (which describes the version: its state tree, HTTP-API slugs, index
selectors), the description is stored with the version, and deploying a version at
start-up or from another node reads only that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backstate.auth import Key, Scope
from backstate.machine import (
    MachineModuleError,
    definition,
    load_migration_source,
    load_source,
)
from backstate.runtime import (
    Backstate,
    Clock,
    Cluster,
    Conflict,
    InvalidRequest,
    NotFound,
    Unavailable,
    compile_selectors,
)
from backstate.runtime._deployments import Version
from backstate.runtime._idempotency import RETENTION_S
from backstate.runtime._migrations import Migration
from backstate.sandbox import Loaded, ProbeFailed, Sandbox
from backstate.store import (
    IndexBackfillRow,
    MachineRow,
    MigrationRow,
    SQLiteStore,
    StoreError,
    VersionRow,
    open_control,
    open_store,
)

from ._cache import ReadThrough, StoreHealth
from ._sealing import KEY_ENV, SecretBox

ADMIN_SCOPES = tuple(Scope)
logger = logging.getLogger("backstate.server")

# Keys and machines are read on every request and change rarely: they are cached for
# this long. A change made through this process clears the cache at once; one made by
# another node sharing the store is seen within this many seconds.
CONTROL_CACHE_SECONDS = 1.0
# On many nodes: how often a node looks for versions and migrations uploaded elsewhere.
DEPLOY_SYNC_SECONDS = 1.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def runtime_name(org_id: str, machine: str) -> str:
    return f"{org_id}.{machine}"


MAX_BODY_BYTES = 1_000_000  # the default limit on request bodies


@dataclass(frozen=True)
class Credentials:
    org_id: str
    key_id: str
    secret: str


class Backend:
    def __init__(
        self,
        db: str | Path,
        *,
        clock: Clock | None = None,
        step_timeout: float = 90.0,
        backfill_batch: int = 100,
        backfill_pause: float = 0.0,
        node_url: str | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        sandbox: Sandbox | None = None,
        allow_private_jwks: bool = False,
        idempotency_retention: float = RETENTION_S,
        secrets_key: Path | None = None,
    ) -> None:
        """``db``: a SQLite file's path or a store URL (``backstate.store.open_store``).
        ``node_url``: with a PostgreSQL store, run as one of many nodes, reachable by the
        others at this URL (see backstate.runtime._cluster). ``max_body_bytes``: larger
        request bodies are refused with 413 ``payload-too-large``, before they are read.
        ``sandbox``: where machine code runs; without one, in this process (trusted).
        ``allow_private_jwks``: identity providers' JWKS may be fetched from loopback,
        private and link-local addresses (see _jwks_fetch). ``idempotency_retention``:
        seconds an ``Idempotency-Key`` is remembered. ``backfill_batch``,
        ``backfill_pause``: the pace of index backfills (runtime/_backfill). ``secrets_key``: the file of the key
        that seals per-org secrets (made if missing; ``BACKSTATE_SECRETS_KEY`` wins)."""
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be positive, not {max_body_bytes}")
        self.max_body_bytes = max_body_bytes
        self.allow_private_jwks = allow_private_jwks
        store = open_store(db)
        self.cluster = (
            Cluster(node_url)
            if node_url is not None and not isinstance(store, SQLiteStore)
            else None
        )
        self.sandbox = sandbox
        self.runtime = Backstate(
            store,
            clock=clock,
            step_timeout=step_timeout,
            cluster=self.cluster,
            code=sandbox,
            idempotency_retention=idempotency_retention,
            secrets=self._secrets_of,
            backfill_batch=backfill_batch,
            backfill_pause=backfill_pause,
        )
        self._secrets_key = secrets_key
        self._secret_box: SecretBox | None = None
        self.control = open_control(db)
        self.deployed: set[str] = set()  # ids of the versions the runtime runs
        # One thread reads behind the caches (see ReadThrough), so a store that hangs
        # holds that thread, never the event loop nor the default executor /readyz uses.
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="backstate-control")
        health = StoreHealth()
        self._keys: ReadThrough[str, Key | None] = ReadThrough(
            self._read_key, CONTROL_CACHE_SECONDS, self._reader, health
        )
        self._machines: ReadThrough[tuple[str, str], MachineRow | None] = ReadThrough(
            lambda key: self.control.machine(*key), CONTROL_CACHE_SECONDS, self._reader, health
        )
        # Registered migrations: id -> the runtime's machine name.
        self._migrations: dict[str, str] = {}
        self._org_secrets: ReadThrough[str, dict[str, str]] = ReadThrough(
            self._read_secrets, CONTROL_CACHE_SECONDS, self._reader, health
        )
        self._sync: asyncio.Task[None] | None = None

    def control_changed(self) -> None:
        """Forget cached keys and machines (call after changing either)."""
        self._keys.clear()
        self._machines.clear()

    async def start(self) -> None:
        if self.sandbox is not None:
            await self._describe_versions()
        await asyncio.to_thread(self._list_added_indexes, None)
        self.sync_deployments()
        await self.runtime.start()
        if self.cluster is not None:
            self._sync = asyncio.create_task(self._follow_deployments(), name="backstate-deploys")

    async def close(self) -> None:
        if self._sync is not None:
            self._sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync
        await self.runtime.close()
        self._reader.shutdown(wait=False, cancel_futures=True)
        self.control.close()

    async def _describe_versions(self) -> None:
        """Versions stored without their description (by an older backstate) are loaded
        once in a worker to get it. One that cannot be loaded is logged and stays
        undeployed: the server starts all the same."""
        for version in self.control.versions():
            if version.definition is not None:
                continue
            try:
                loaded = await self.sandbox_probe(
                    version.org_id, version.machine, version.id, version.source
                )
            except MachineModuleError as exc:
                logger.error(
                    "version %s of %s cannot be deployed: %s", version.id, version.machine, exc
                )
                continue
            await asyncio.to_thread(self.control.describe_version, version.id, loaded)

    async def sandbox_probe(
        self, org_id: str, slug: str, version_id: str, source: str
    ) -> dict[str, Any]:
        """A version's description, from loading its file: in a fresh sandboxed worker,
        or (trusted mode) here. ``MachineModuleError`` when it does not load."""
        filename = f"{slug}@{version_id}.py"
        if self.sandbox is None:
            return definition(load_source(source, filename))
        try:
            loaded = await self.sandbox.probe(
                runtime_name(org_id, slug), version_id, source, filename
            )
        except ProbeFailed as exc:
            raise MachineModuleError(exc.code, exc.message, filename, exc.line) from None
        return loaded.to_json()

    def sync_deployments(self) -> None:
        """Deploy the versions and migrations in the control store that this process
        does not run yet, and follow each machine's current version: at start, and on
        many nodes every ``DEPLOY_SYNC_SECONDS`` (another node may have uploaded). Only
        ids are read unless something is new."""
        self._apply_deployments(*self._read_deployments())

    def _read_deployments(
        self,
    ) -> tuple[list[VersionRow], list[MachineRow], list[MigrationRow]]:
        """What is new in the control store (reads only: they may run in a thread)."""
        version_ids, migration_ids = self.control.deployment_ids()
        new_versions = version_ids - self.deployed
        versions = (
            [v for v in self.control.versions() if v.id in new_versions] if new_versions else []
        )
        migrations = (
            [m for m in self.control.migrations() if m.id not in self._migrations]
            if migration_ids - self._migrations.keys()
            else []
        )
        # Deleted through another node since: this one forgets them too.
        for gone in self._migrations.keys() - migration_ids:
            self.runtime.remove_migration(self._migrations.pop(gone), gone)
        return versions, self.control.machines(), migrations

    def _apply_deployments(
        self, versions: list[VersionRow], machines: list[MachineRow], migrations: list[MigrationRow]
    ) -> None:
        current = {m.current_version for m in machines}
        for version in versions:
            if version.id not in self.deployed:
                self._deploy(version, make_current=version.id in current)
        if versions:
            self.control_changed()
        for machine in machines:
            if machine.current_version in self.deployed:
                self.runtime.make_current(
                    runtime_name(machine.org_id, machine.slug), machine.current_version
                )
        for migration in migrations:
            if migration.id not in self._migrations:
                self._register(migration)

    async def _follow_deployments(self) -> None:
        while True:
            await asyncio.sleep(DEPLOY_SYNC_SECONDS)
            try:
                # Read off the event loop: a store that does not answer (PostgreSQL
                # restarting) must not stall every request meanwhile.
                self._apply_deployments(*await asyncio.to_thread(self._read_deployments))
            except StoreError as exc:
                logger.warning("could not read deployments: %s", exc)
            except MachineModuleError as exc:
                logger.error("a version or migration from another node does not load: %s", exc)

    # -- orgs and keys ----------------------------------------------------------------------

    def ensure_admin(self) -> Credentials | None:
        """On first start: an org with an admin key and, as on State Backed, anonymous
        access (a production key, the anonymous IdP and token provider). Returns the
        admin credentials only when created."""
        from ._identity import create_org  # here: _identity imports this module

        if self.control.orgs():
            return None
        try:
            org_id, admin = create_org(self.control, "default", allow_anonymous=True, first=True)
        except StoreError:
            if self.control.orgs():  # another node starting at the same time made it
                return None
            raise
        return Credentials(org_id, admin.id, admin.secret)

    # -- secrets ------------------------------------------------------------------------------

    @property
    def secret_box(self) -> SecretBox:
        """What seals and opens secrets; 503 ``no-secrets-key`` if the server has none."""
        if self._secret_box is None:
            if self._secrets_key is None and not os.environ.get(KEY_ENV):
                raise Unavailable(
                    "no-secrets-key", f"start the server with --secrets-key or {KEY_ENV}"
                )
            self._secret_box = SecretBox.from_file(self._secrets_key or Path("secrets.key"))
        return self._secret_box

    def secrets_changed(self) -> None:
        self._org_secrets.clear()

    def _secrets_of(self, machine: str) -> dict[str, str]:
        """A runtime machine's (``<org>.<machine>``) org's secrets, opened."""
        org_id, dot, _ = machine.partition(".")
        return self._org_secrets.get(org_id) if dot else {}

    def _read_secrets(self, org_id: str) -> dict[str, str]:
        rows = self.control.secrets(org_id)
        if not rows:
            return {}
        opened = {r.name: self.secret_box.open(org_id, r.name, r.sealed) for r in rows}
        for name, value in opened.items():
            if value is None:
                logger.error("secret %s of org %s does not open with this key", name, org_id)
        return {name: value for name, value in opened.items() if value is not None}

    def lookup_key(self, key_id: str) -> Key | None:
        return self._keys.get(key_id)

    def _read_key(self, key_id: str) -> Key | None:
        row = self.control.key(key_id)
        if row is None:
            return None
        scopes = tuple(Scope(s) for s in row.scopes if s in Scope._value2member_map_)
        return Key(row.id, row.org_id, row.name, scopes, row.secret, row.created_at)

    # -- machines and versions ----------------------------------------------------------------

    def create_machine(self, org_id: str, slug: str, indexes: list[str]) -> MachineRow:
        row = MachineRow(org_id, slug, tuple(indexes), now_ms(), None)
        if not self.control.add_machine(row):
            raise Conflict("invalid-state", f"machine {slug!r} already exists")
        self.control_changed()
        return row

    async def add_index(self, org_id: str, slug: str, name: str, selector: str) -> IndexBackfillRow:
        """Add an index to an existing machine and backfill its instances (the runtime's
        ``add_index``); the machine lists it at once."""
        machine = self.machine(org_id, slug)
        runtime = runtime_name(org_id, slug)
        # An added one (listed too) is the runtime's to judge: a failed one is retried.
        if name in machine.indexes and name not in {
            r.name for r in await self.runtime.added_indexes(runtime)
        }:
            raise Conflict("index-exists", f"machine {slug!r} already has an index {name!r}")
        row = await self.runtime.add_index(runtime, name, selector, known=True)
        await asyncio.to_thread(self._list_added_indexes, org_id, slug)
        return row

    async def added_indexes(self, org_id: str, slug: str) -> list[IndexBackfillRow]:
        return await self.runtime.added_indexes(runtime_name(org_id, slug))

    def _list_added_indexes(self, org_id: str | None, slug: str | None = None) -> None:
        """Make the control store's machines list the indexes added to them (written
        after the index itself, so a crash in between is mended at the next start)."""
        machines = [m for m in self.control.machines(org_id) if slug is None or m.slug == slug]
        changed = False
        for machine in machines:
            added = self.runtime.store.index_backfills(runtime_name(machine.org_id, machine.slug))
            missing = [r.name for r in added if r.name not in machine.indexes]
            if missing:
                self.control.set_machine_indexes(
                    machine.org_id, machine.slug, [*machine.indexes, *missing]
                )
                changed = True
        if changed:
            self.control_changed()

    def machine(self, org_id: str, slug: str) -> MachineRow:
        row = self._machines.get((org_id, slug))
        if row is None:
            raise NotFound("machine-not-found", f"no machine {slug!r}")
        if self.cluster and row.current_version and row.current_version not in self.deployed:
            self.sync_deployments()  # uploaded through another node a moment ago
        return row

    async def create_version(
        self,
        org_id: str,
        slug: str,
        source: str,
        client_info: str | None,
        make_current: bool,
        filename: str,
        index_selectors: dict[str, Any] | None = None,
    ) -> VersionRow:
        """Selectors: as given, else the file's ``index_selectors``, else those of the
        current version (State Backed's CLI default). The file is loaded (in a fresh
        sandboxed worker, or here when trusted) and refused with ``MachineModuleError``
        (file and line) unless it loads."""
        machine = self.machine(org_id, slug)
        same = self._same_version(org_id, slug, source, client_info, index_selectors)
        if same is not None:
            # The same file under the same reference (`dev` after a file was reverted):
            # that version again, rather than a second one whose reference is ambiguous.
            if make_current and machine.current_version != same.id:
                await asyncio.to_thread(self.control.set_current_version, org_id, slug, same.id)
                self.control_changed()
                self.runtime.make_current(runtime_name(org_id, slug), same.id)
            return same
        version_id = "ver_" + secrets.token_urlsafe(16)
        described = await self.sandbox_probe(org_id, slug, version_id, source)
        if index_selectors is None:
            index_selectors = described["indexSelectors"]
        if index_selectors is None:
            current = [
                v for v in self.control.versions(org_id, slug) if v.id == machine.current_version
            ]
            index_selectors = dict(current[0].index_selectors) if current else {}
        if not isinstance(index_selectors, dict):
            raise InvalidRequest("invalid-index-selector", "indexSelectors must be an object")
        undeclared = sorted(set(index_selectors) - set(machine.indexes))
        if undeclared:
            raise InvalidRequest(
                "invalid-index-selector",
                f"machine {slug!r} declares no index {undeclared[0]!r} (it declares "
                f"{list(machine.indexes)})",
            )
        compile_selectors(index_selectors)
        version = VersionRow(
            version_id,
            org_id,
            slug,
            client_info,
            source,
            index_selectors,
            now_ms(),
            described,
        )
        await asyncio.to_thread(self.control.add_version, version, make_current)
        self.control_changed()
        self._deploy(version, make_current)
        return version

    def _same_version(
        self,
        org_id: str,
        slug: str,
        source: str,
        client_info: str | None,
        index_selectors: dict[str, Any] | None,
    ) -> VersionRow | None:
        if client_info is None:
            return None
        for row in self.control.versions(org_id, slug):
            if (
                (row.client_info, row.source) == (client_info, source)
                and (index_selectors is None or row.index_selectors == index_selectors)
                and row.id in self.deployed
            ):
                return row
        return None

    def _deploy(self, row: VersionRow, make_current: bool) -> None:
        name = runtime_name(row.org_id, row.machine)
        filename = f"{row.machine}@{row.id}.py"
        indexes = compile_selectors(row.index_selectors)
        if self.sandbox is None:
            module = load_source(row.source, filename)
            version = Version(
                name,
                row.id,
                module.machine,
                module.allow_read,
                module.allow_write,
                indexes,
                module.http_api,
                module.step_timeout,
            )
        elif row.definition is None:
            return  # it could not be described (logged at start)
        else:
            self.sandbox.add_version(name, row.id, row.source, filename)
            version = self.sandbox.version(name, row.id, Loaded.from_json(row.definition), indexes)
        self.runtime.deploy_version(version, make_current)
        self.deployed.add(row.id)

    async def create_migration(
        self, org_id: str, slug: str, from_version: str, to_version: str, source: str
    ) -> MigrationRow:
        self.machine(org_id, slug)
        known = {v.id for v in self.control.versions(org_id, slug)}
        for parameter, version_id in (
            ("fromMachineVersionId", from_version),
            ("toMachineVersionId", to_version),
        ):
            if version_id not in known:
                raise NotFound(
                    "machine-version-not-found", f"{parameter}: no version {version_id!r}"
                )
        if from_version == to_version:
            raise InvalidRequest("invalid-migration", "a migration needs two different versions")
        for existing in self.control.migrations(org_id, slug):
            if (existing.from_version, existing.to_version) == (from_version, to_version):
                # Accepting it would leave two for one step, one of them never used.
                raise Conflict(
                    "migration-exists",
                    f"migration {existing.id} already goes from {from_version} to "
                    f"{to_version}: delete it first (`backstate migrations delete -m {slug} "
                    f"--id {existing.id}`), then upload the corrected one",
                )
        row = MigrationRow(
            "mig_" + secrets.token_urlsafe(16),
            org_id,
            slug,
            from_version,
            to_version,
            source,
            now_ms(),
        )
        filename = f"{row.machine}@{row.id}.py"
        if self.sandbox is not None:
            try:
                await self.sandbox.probe_migration(self._migration(row), source, filename)
            except ProbeFailed as exc:
                raise MachineModuleError(exc.code, exc.message, filename, exc.line) from None
        self._register(row)  # raises MachineModuleError with file and line (trusted)
        await asyncio.to_thread(self.control.add_migration, row)
        return row

    def migration(self, org_id: str, slug: str, migration_id: str) -> MigrationRow:
        self.machine(org_id, slug)
        for row in self.control.migrations(org_id, slug):
            if row.id == migration_id:
                return row
        raise NotFound("migration-not-found", f"no migration {migration_id!r} of {slug!r}")

    async def delete_migration(self, org_id: str, slug: str, migration_id: str) -> None:
        """Delete a migration: no upgrade uses it from now on (other nodes forget it
        at their next deployment sync)."""
        self.migration(org_id, slug, migration_id)
        await asyncio.to_thread(self.control.delete_migration, org_id, slug, migration_id)
        self._migrations.pop(migration_id, None)
        self.runtime.remove_migration(runtime_name(org_id, slug), migration_id)

    def _migration(self, row: MigrationRow) -> Migration:
        """A sandboxed migration: its functions run in the workers."""

        def remote(*args: Any) -> Any:
            raise AssertionError("migrations of sandboxed versions run in their workers")

        name = runtime_name(row.org_id, row.machine)
        return Migration(row.id, name, row.from_version, row.to_version, remote, remote)

    def _register(self, row: MigrationRow) -> None:
        filename = f"{row.machine}@{row.id}.py"
        if self.sandbox is None:
            module = load_migration_source(row.source, filename)
            upgrade_state, upgrade_context = module.upgrade_state, module.upgrade_context
        else:
            migration = self._migration(row)
            self.sandbox.add_migration(migration, row.source, filename)
            upgrade_state, upgrade_context = migration.upgrade_state, migration.upgrade_context
        self._migrations[row.id] = runtime_name(row.org_id, row.machine)
        self.runtime.add_migration(
            runtime_name(row.org_id, row.machine),
            row.id,
            row.from_version,
            row.to_version,
            upgrade_state,
            upgrade_context,
        )

    def check_stores(self) -> None:
        """One read of the control store and one of the instance store (``StoreError``
        if either fails): what ``/readyz`` asks."""
        self.control.deployment_ids()
        self.runtime.store.load_instance(("", ""))

    def require_version(self, org_id: str, slug: str, version_id: str | None) -> None:
        machine = self.machine(org_id, slug)
        if version_id is None and machine.current_version is None:
            raise Conflict("invalid-state", f"machine {slug!r} has no version yet")
        if version_id is not None and version_id not in self.deployed and self.cluster:
            self.sync_deployments()  # uploaded through another node a moment ago
        if version_id is not None and version_id not in self.deployed:
            raise InvalidRequest("invalid-parameter", f"no version {version_id!r} of {slug!r}")

    async def deploy_file(self, org_id: str, path: Path) -> VersionRow:
        """Create the machine named after ``path`` (if needed, with the indexes its file
        selects) and a current version."""
        slug = path.stem.replace("_", "-")
        source = path.read_text(encoding="utf-8")
        if self.control.machine(org_id, slug) is None:
            described = await self.sandbox_probe(org_id, slug, "ver_new", source)
            self.create_machine(org_id, slug, list(described.get("indexSelectors") or {}))
        return await self.create_version(org_id, slug, source, path.name, True, str(path))


def state_body(state: Any) -> dict[str, Any]:
    """The State schema of the API: what leaves an instance (only ``context.public``)."""
    return {
        "ts": state.ts,
        "state": state.value,
        "publicContext": state.public_context,
        "tags": sorted(state.tags),
        "done": state.done,
    }
