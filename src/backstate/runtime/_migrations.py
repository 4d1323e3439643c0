"""Migrations between machine versions: finding a path and upgrading a snapshot.

Pure: no I/O. A migration is user code with two functions (State Backed's shape):

* ``upgrade_state(old_state_path, context) -> new_state_path``, called once per leaf
  state path (each parallel region separately) and once per remembered history target;
* ``upgrade_context(old_state_paths, new_state_paths, context) -> context``, once per hop.

A state path is the list of state keys from the root: ``["Playing", "Awaiting x move"]``.
Upgrading follows the shortest chain of registered migrations (breadth first, each
migration usable in its own direction). The result must be a legal configuration of the
target machine, or the upgrade fails as a whole and nothing changes.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backstate.chart import ExecutionError, Machine

from ._errors import BackstateError, InvalidRequest

if TYPE_CHECKING:
    from ._deployments import Version

StatePath = list[str]
UpgradeState = Callable[[StatePath, Any], StatePath]
UpgradeContext = Callable[[list[StatePath], list[StatePath], Any], Any]

UPGRADE_EVENT = "statebacked.upgrade"


class NoMigrationPath(InvalidRequest):
    """No chain of migrations leads from an instance's version to the one asked for."""


class MigrationFailed(BackstateError):
    """The migration raised or produced something the target version cannot hold."""

    status = 400


@dataclass(frozen=True)
class Migration:
    id: str
    machine: str
    from_version: str
    to_version: str
    upgrade_state: UpgradeState
    upgrade_context: UpgradeContext


def find_path(migrations: Iterable[Migration], source: str, target: str) -> list[Migration]:
    """The shortest chain of migrations from ``source`` to ``target`` (empty when they
    are the same version). Ties go to the migration registered first."""
    if source == target:
        return []
    edges: dict[str, list[Migration]] = {}
    for migration in migrations:
        edges.setdefault(migration.from_version, []).append(migration)
    came_by: dict[str, Migration | None] = {source: None}
    todo = deque([source])
    while todo:
        version = todo.popleft()
        for migration in edges.get(version, ()):
            if migration.to_version in came_by:
                continue
            came_by[migration.to_version] = migration
            if migration.to_version == target:
                chain: list[Migration] = []
                step: Migration | None = migration
                while step is not None:
                    chain.append(step)
                    step = came_by[step.from_version]
                return chain[::-1]
            todo.append(migration.to_version)
    raise NoMigrationPath(
        "no-migration-path", f"no chain of migrations leads from version {source} to {target}"
    )


def upgrade_path(
    migrations: Iterable[Migration], source: Version, target: Version
) -> list[Migration]:
    """``find_path``, or, when no chain leads there but both versions have the same
    state tree (the same state paths, of the same kinds: a version that changed only
    tags, actions or guards), the implied identity migration: no chain at all."""
    try:
        return find_path(migrations, source.id, target.id)
    except NoMigrationPath:
        if _states(source.machine) == _states(target.machine):
            return []
        raise


def _states(machine: Machine) -> dict[str, str]:
    return {node.dotted: node.type for node in machine.nodes_by_id.values()}


def leaf_paths(value: Any) -> list[StatePath]:
    """``{"a": {"b": {}, "c": "d"}}`` -> ``[["a", "b"], ["a", "c", "d"]]``."""
    if isinstance(value, str):
        return [[value]]
    paths: list[StatePath] = []
    for key, sub in value.items():
        if isinstance(sub, str):
            paths.append([key, sub])
        elif not sub:
            paths.append([key])
        else:
            paths.extend([key, *p] for p in leaf_paths(sub))
    return paths


def value_of(paths: Iterable[StatePath]) -> dict[str, Any]:
    """The state value made of leaf paths (the inverse of ``leaf_paths``)."""
    value: dict[str, Any] = {}
    for path in paths:
        node = value
        for key in path:
            node = node.setdefault(key, {})
    return value


def upgrade_snapshot(
    data: Mapping[str, Any],
    chain: list[Migration],
    source: Machine,
    target: Machine,
) -> dict[str, Any]:
    """The JSON snapshot ``data`` of ``source`` upgraded along ``chain`` to ``target``.

    Raises ``MigrationFailed`` (with the migration id) when user code raises, returns
    something that is not a state path or JSON, or when the result is not a legal
    configuration of ``target``. History entries that no longer resolve are dropped:
    the history state then starts from its default, as if never visited.
    """
    value = data["value"]
    context = data.get("context")
    history: dict[tuple[str, ...], list[StatePath]] = {
        _path_of(source, hid): [list(_path_of(source, i)) for i in ids]
        for hid, ids in (data.get("historyValue") or {}).items()
    }
    for migration in chain:
        old_paths = leaf_paths(value)
        try:
            new_paths = [_upgraded(migration, p, context) for p in old_paths]
            history = {
                tuple(_upgraded(migration, list(h), context)): [
                    _upgraded(migration, list(p), context) for p in targets
                ]
                for h, targets in history.items()
            }
            context = migration.upgrade_context(
                [list(p) for p in old_paths], [list(p) for p in new_paths], context
            )
            json.dumps(context, allow_nan=False)
        except MigrationFailed:
            raise
        except Exception as exc:
            raise MigrationFailed(
                "migration-failed", f"migration {migration.id} raised {type(exc).__name__}: {exc}"
            ) from exc
        value = value_of(new_paths)
    resolved_history: dict[str, list[str]] = {}
    for h, targets in history.items():
        hid = _id_at(target, h)
        ids = [_id_at(target, tuple(p)) for p in targets]
        if hid is not None and None not in ids:
            resolved_history[hid] = [i for i in ids if i is not None]
    upgraded = {
        **data,
        "value": value,
        "context": context,
        "historyValue": resolved_history,
    }
    try:
        snapshot = target.resolve_snapshot(upgraded)
    except ExecutionError as exc:
        raise MigrationFailed(
            "migration-failed", f"the upgraded state {value!r} is not valid: {exc.message}"
        ) from exc
    for node in snapshot.configuration.nodes:
        active = [c for c in node.real_children if c in snapshot.configuration.nodes]
        if node.type == "compound" and len(active) != 1:
            names = sorted(c.key for c in active)
            raise MigrationFailed(
                "migration-failed",
                f"the upgraded state {value!r} has {len(active)} active children of "
                f"{node.dotted or 'the root'} ({names}); exactly one must be",
            )
    return snapshot.to_json()


def _upgraded(migration: Migration, path: StatePath, context: Any) -> StatePath:
    result = migration.upgrade_state(list(path), context)
    if (
        not isinstance(result, list | tuple)
        or not result
        or not all(isinstance(k, str) for k in result)
    ):
        raise MigrationFailed(
            "migration-failed",
            f"migration {migration.id}: upgrade_state({path!r}) returned {result!r}, "
            "not a non-empty list of state names",
        )
    return list(result)


def _path_of(machine: Machine, state_id: str) -> tuple[str, ...]:
    node = machine.nodes_by_id.get(state_id)
    if node is None:
        raise MigrationFailed("migration-failed", f"unknown state id {state_id!r} in history")
    return node.path


def _id_at(machine: Machine, path: tuple[str, ...]) -> str | None:
    node = machine.root
    for key in path:
        child = node.children.get(key)
        if child is None:
            return None
        node = child
    return node.id


@dataclass
class UpgradeReport:
    """What ``dry_run_upgrade`` found: the chain, how many recorded transitions were
    replayed, and the first one (if any) where the target version diverges."""

    from_version: str
    to_version: str
    migration_path: list[str]
    replayed: int = 0
    diverged_at: int | None = None  # the history seq of the first divergence
    event: Any = None
    expected: dict[str, Any] | None = None  # the old result, migrated
    actual: dict[str, Any] | None = None  # the target version's result
    # What upgrading now would do to its after timers (``TimerPlan.warnings``).
    timers: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "fromMachineVersionId": self.from_version,
            "toMachineVersionId": self.to_version,
            "migrationPath": self.migration_path,
            "replayed": self.replayed,
            "divergedAt": self.diverged_at,
            "event": self.event,
            "expected": self.expected,
            "actual": self.actual,
            "timers": self.timers,
        }


def replay_upgrade(
    source: Version, target: Version, chain: list[Migration], rows: list[Any]
) -> UpgradeReport:
    """See ``Backstate.dry_run_upgrade``. ``rows`` are the instance's history rows."""
    report = UpgradeReport(source.id, target.id, [m.id for m in chain])
    start = 0  # the history since the instance reached its current version
    for index, row in enumerate(rows):
        if isinstance(row.event, dict) and row.event.get("type") == UPGRADE_EVENT:
            start = index
    if not rows:
        return report
    first = rows[start]
    snapshot = target.machine.resolve_snapshot(
        upgrade_snapshot(first.snapshot, chain, source.machine, target.machine)
    )
    for row in rows[start + 1 :]:
        expected = upgrade_snapshot(row.snapshot, chain, source.machine, target.machine)
        try:
            snapshot, _ = target.machine.transition(snapshot, row.event)
            actual = {"value": snapshot.value, "context": snapshot.context}
        except ExecutionError as exc:
            actual = {"error": exc.message}
        report.replayed += 1
        wanted = {"value": expected["value"], "context": expected["context"]}
        if actual != wanted:
            report.diverged_at = row.seq
            report.event = row.event
            report.expected = wanted
            report.actual = actual
            break
    return report
