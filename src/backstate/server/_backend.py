"""The backend behind the HTTP API: the runtime plus the control plane (orgs, keys,
machines, versions). Each org's machines run in the runtime as ``<org>.<machine>``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backstate.auth import Key, Scope
from backstate.machine import (
    MachineModule,
    MachineModuleError,
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
    compile_selectors,
)
from backstate.store import (
    MachineRow,
    MigrationRow,
    SQLiteStore,
    StoreError,
    VersionRow,
    open_control,
    open_store,
)

from ._cache import MISS, Expiring

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
        node_url: str | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        allow_private_jwks: bool = False,
    ) -> None:
        """``db``: a SQLite file's path or a store URL (``backstate.store.open_store``).
        ``node_url``: with a PostgreSQL store, run as one of many nodes, reachable by the
        others at this URL (see backstate.runtime._cluster). ``max_body_bytes``: larger
        request bodies are refused with 413 ``payload-too-large``, before they are read.
        ``allow_private_jwks``: identity providers' JWKS may be fetched from loopback,
        private and link-local addresses (see _jwks_fetch)."""
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
        self.runtime = Backstate(
            store, clock=clock, step_timeout=step_timeout, cluster=self.cluster
        )
        self.control = open_control(db)
        self.modules: dict[str, MachineModule] = {}  # version id -> loaded module
        self._keys: Expiring[str, Key | None] = Expiring()
        self._machines: Expiring[tuple[str, str], MachineRow | None] = Expiring()
        self._migrations: set[str] = set()  # registered migration ids
        self._sync: asyncio.Task[None] | None = None

    def control_changed(self) -> None:
        """Forget cached keys and machines (call after changing either)."""
        self._keys.clear()
        self._machines.clear()

    async def start(self) -> None:
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
        self.control.close()

    def sync_deployments(self) -> None:
        """Deploy the versions and migrations in the control store that this process
        does not run yet, and follow each machine's current version: at start, and on
        many nodes every ``DEPLOY_SYNC_SECONDS`` (another node may have uploaded). Only
        ids are read unless something is new."""
        version_ids, migration_ids = self.control.deployment_ids()
        new_versions = version_ids - self.modules.keys()
        machines = self.control.machines()
        if new_versions:
            current = {m.current_version for m in machines}
            for version in self.control.versions():
                if version.id in new_versions:
                    self._deploy(version, make_current=version.id in current)
            self.control_changed()
        for machine in machines:
            if machine.current_version in self.modules:
                self.runtime.make_current(
                    runtime_name(machine.org_id, machine.slug), machine.current_version
                )
        if migration_ids - self._migrations:
            for migration in self.control.migrations():
                if migration.id not in self._migrations:
                    self._register(migration)

    async def _follow_deployments(self) -> None:
        while True:
            await asyncio.sleep(DEPLOY_SYNC_SECONDS)
            try:
                self.sync_deployments()
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

    def lookup_key(self, key_id: str) -> Key | None:
        now = time.monotonic()
        hit = self._keys.get(key_id, now)
        if hit is not MISS:
            return hit
        row = self.control.key(key_id)
        key = None
        if row is not None:
            scopes = tuple(Scope(s) for s in row.scopes if s in Scope._value2member_map_)
            key = Key(row.id, row.org_id, row.name, scopes, row.secret, row.created_at)
        self._keys.put(key_id, key, now + CONTROL_CACHE_SECONDS)
        return key

    # -- machines and versions ----------------------------------------------------------------

    def create_machine(self, org_id: str, slug: str, indexes: list[str]) -> MachineRow:
        row = MachineRow(org_id, slug, tuple(indexes), now_ms(), None)
        if not self.control.add_machine(row):
            raise Conflict("invalid-state", f"machine {slug!r} already exists")
        self.control_changed()
        return row

    def machine(self, org_id: str, slug: str) -> MachineRow:
        now = time.monotonic()
        row = self._machines.get((org_id, slug), now)
        if row is MISS:
            row = self.control.machine(org_id, slug)
            self._machines.put((org_id, slug), row, now + CONTROL_CACHE_SECONDS)
        if row is None:
            raise NotFound("machine-not-found", f"no machine {slug!r}")
        if self.cluster and row.current_version and row.current_version not in self.modules:
            self.sync_deployments()  # uploaded through another node a moment ago
        return row

    def create_version(
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
        current version (State Backed's CLI default)."""
        machine = self.machine(org_id, slug)
        module = load_source(source, filename)  # raises MachineModuleError with file and line
        if index_selectors is None:
            index_selectors = module.index_selectors
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
            "ver_" + secrets.token_urlsafe(16),
            org_id,
            slug,
            client_info,
            source,
            index_selectors,
            now_ms(),
        )
        self.control.add_version(version, make_current)
        self.control_changed()
        self._deploy(version, make_current)
        return version

    def _deploy(self, version: VersionRow, make_current: bool) -> None:
        module = load_source(version.source, f"{version.machine}@{version.id}.py")
        self.modules[version.id] = module
        self.runtime.deploy(
            runtime_name(version.org_id, version.machine),
            module.machine,
            version=version.id,
            allow_read=module.allow_read,
            allow_write=module.allow_write,
            make_current=make_current,
            indexes=version.index_selectors,
        )

    def create_migration(
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
        row = MigrationRow(
            "mig_" + secrets.token_urlsafe(16),
            org_id,
            slug,
            from_version,
            to_version,
            source,
            now_ms(),
        )
        self._register(row)  # raises MachineModuleError with file and line
        self.control.add_migration(row)
        return row

    def _register(self, row: MigrationRow) -> None:
        module = load_migration_source(row.source, f"{row.machine}@{row.id}.py")
        self._migrations.add(row.id)
        self.runtime.add_migration(
            runtime_name(row.org_id, row.machine),
            row.id,
            row.from_version,
            row.to_version,
            module.upgrade_state,
            module.upgrade_context,
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
        if version_id is not None and version_id not in self.modules and self.cluster:
            self.sync_deployments()  # uploaded through another node a moment ago
        if version_id is not None and version_id not in self.modules:
            raise InvalidRequest("invalid-parameter", f"no version {version_id!r} of {slug!r}")

    def deploy_file(self, org_id: str, path: Path) -> VersionRow:
        """Create the machine named after ``path`` (if needed) and a current version."""
        slug = path.stem.replace("_", "-")
        if self.control.machine(org_id, slug) is None:
            self.create_machine(org_id, slug, [])
        return self.create_version(
            org_id, slug, path.read_text(encoding="utf-8"), path.name, True, str(path)
        )


def state_body(state: Any) -> dict[str, Any]:
    """The State schema of the API: what leaves an instance (only ``context.public``)."""
    return {
        "ts": state.ts,
        "state": state.value,
        "publicContext": state.public_context,
        "tags": sorted(state.tags),
        "done": state.done,
    }
