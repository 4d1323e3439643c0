"""Deployed machines: versions, the current one, authorizers, persistent-child refs."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backstate.chart import Machine

from ._errors import InvalidRequest, NotFound
from ._migrations import Migration

if TYPE_CHECKING:
    from ._indexes import IndexSpec

NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")

Authorizer = Callable[..., bool]


def check_name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidRequest("invalid-name", f"{kind} name must match {NAME.pattern}, got {name!r}")
    return name


MAX_EVENT_TYPE = 256
_QUOTES = ('"', "'")


def check_event_type(event_type: str) -> str:
    """An event type a caller may send: any text of 1 to 256 characters (spaces included:
    State Backed's apps send ``"Add requirement block"``) without control characters,
    edge whitespace or ``*`` (a descriptor's wildcard, never an event's type), outside
    the reserved ``xstate.``/``backstate.`` namespaces. ``invalid-event`` otherwise, with a
    hint for a type that kept the quotes of a shell's JSON (``'"submit"'`` would never
    match a transition)."""
    if event_type.startswith(("xstate.", "backstate.")):
        raise InvalidRequest("invalid-event", f"event type {event_type!r} is reserved")
    problem = _event_type_problem(event_type)
    if problem:
        hint = ""
        bare = event_type.strip("\"' ")
        if bare != event_type and bare and not _event_type_problem(bare):
            what = "quotes" if bare != event_type.strip() else "the spaces around it"
            hint = f" (to send the event {bare!r}, pass the type without {what}: -e {bare})"
        raise InvalidRequest("invalid-event", f"event type {problem}, got {event_type!r}{hint}")
    return event_type


def _event_type_problem(event_type: str) -> str:
    if not 1 <= len(event_type) <= MAX_EVENT_TYPE:
        return f"must have 1 to {MAX_EVENT_TYPE} characters"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in event_type):
        return "must not hold control characters"
    if event_type != event_type.strip():
        return "must not start or end with whitespace"
    if "*" in event_type:
        return "must not hold '*' (a wildcard of transitions, not an event)"
    if len(event_type) > 1 and event_type[0] in _QUOTES and event_type[-1] == event_type[0]:
        return "must not be wrapped in quotes"
    return ""


MAX_STEP_TIMEOUT = 86400.0


def check_step_timeout(seconds: Any) -> float:
    """A step timeout: seconds, more than 0 and at most a day."""
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 < seconds <= MAX_STEP_TIMEOUT
    ):
        raise InvalidRequest(
            "invalid-step-timeout",
            f"a step timeout is seconds, more than 0 and at most {MAX_STEP_TIMEOUT:g}, "
            f"not {seconds!r}",
        )
    return float(seconds)


def check_machine(name: Any) -> str:
    """A machine name, optionally qualified by a namespace: ``org.machine``. The server
    keeps each org's machines apart this way ('.' never occurs in a valid name)."""
    if isinstance(name, str) and name.count(".") == 1:
        namespace, _, machine = name.partition(".")
        check_name("namespace", namespace)
        check_name("machine", machine)
        return name
    return check_name("machine", name)


def namespace_of(machine: str) -> str | None:
    return machine.partition(".")[0] if "." in machine else None


def address(machine: Any, instance: Any, sender: str) -> tuple[str, str]:
    """The instance that code of machine ``sender`` names as (``machine``, ``instance``):
    always one of the sender's own namespace (org). A name qualified by a namespace is
    refused (``cross-org-address``), so a machine can never reach another org's
    instances, whatever names its code builds; so is a name that is not valid
    (``invalid-address``)."""
    namespace = namespace_of(sender)
    if namespace is not None and isinstance(machine, str) and "." in machine:
        raise InvalidRequest(
            "cross-org-address",
            f"{machine!r} names another org's machine; machines address only their own org's",
        )
    try:
        local = check_name("machine", machine) if namespace else check_machine(machine)
        name = check_name("instance", instance)
    except InvalidRequest as exc:
        raise InvalidRequest("invalid-address", exc.message) from exc
    return (f"{namespace}.{local}" if namespace else local, name)


def unqualified(machine: str) -> str:
    return machine.partition(".")[2] if "." in machine else machine


@dataclass(frozen=True)
class Persistent:
    """An actor implementation that makes the child a durable instance of its own:
    ``setup(actors={"worker": persistent("worker-machine")})``. The child's name is
    ``instance`` (a string, or a function of the invoke/spawn input), else
    ``<parent>-<child id>``."""

    machine: str
    instance: str | Callable[[Any], str] | None = None

    def name_for(self, parent: str, child_id: str, input: Any) -> str:
        if callable(self.instance):
            return str(self.instance(input))
        return self.instance or f"{parent}-{child_id}"


def persistent(machine: str, instance: str | Callable[[Any], str] | None = None) -> Persistent:
    return Persistent(machine, instance)


def instance_ref(machine: str, instance: str) -> str:
    """A ``send_to`` target naming any instance: ``send_to(instance_ref("agg", "x"), ...)``."""
    return f"backstate:{machine}/{instance}"


def parse_ref(to: str) -> tuple[str, str] | None:
    if not to.startswith("backstate:"):
        return None
    machine, _, name = to[len("backstate:") :].partition("/")
    return (machine, name) if machine and name else None


@dataclass
class Version:
    """A deployed version. ``machine`` is its machine, or where its code runs elsewhere
    (a sandbox) a machine of the same shape (``backstate.chart`` skeleton); likewise
    its authorizers are the functions or stand-ins, and ``http_api`` maps each HTTP-API
    slug to its functions (or to None)."""

    machine_name: str
    id: str
    machine: Machine
    allow_read: Authorizer | None
    allow_write: Authorizer | None
    indexes: tuple[IndexSpec, ...] = ()
    http_api: Mapping[str, Any] = field(default_factory=dict)
    # Seconds a request waits for an instance to settle and a service may run; None:
    # the runtime's (``step_timeout``, a server's ``--step-timeout``).
    step_timeout: float | None = None


@dataclass
class Deployment:
    name: str
    versions: dict[str, Version] = field(default_factory=dict)
    current: str | None = None
    migrations: list[Migration] = field(default_factory=list)


class Registry:
    def __init__(self) -> None:
        self.machines: dict[str, Deployment] = {}
        # Indexes added to a machine (runtime/_backfill), by machine and index name: they
        # apply to each of its versions that does not name them itself.
        self.added: dict[str, dict[str, IndexSpec]] = {}

    def add_index(self, machine: str, spec: IndexSpec) -> None:
        self.added.setdefault(machine, {})[spec.name] = spec

    def drop_indexes(self, machine: str) -> None:
        self.added.pop(machine, None)

    def indexes(self, version: Version) -> tuple[IndexSpec, ...]:
        """What a transition of ``version`` indexes: its own selectors, and the
        machine's added indexes it does not name."""
        added = self.added.get(version.machine_name)
        if not added:
            return version.indexes
        own = {spec.name for spec in version.indexes}
        return version.indexes + tuple(s for n, s in added.items() if n not in own)

    def version_index_names(self, machine: str) -> set[str]:
        """The index names the machine's versions declare (not the added ones)."""
        deployment = self.machines.get(machine)
        versions = deployment.versions.values() if deployment is not None else ()
        return {s.name for v in versions for s in v.indexes}

    def add(self, version: Version, make_current: bool) -> None:
        deployment = self.machines.setdefault(
            version.machine_name, Deployment(version.machine_name)
        )
        deployment.versions[version.id] = version
        if make_current or deployment.current is None:
            deployment.current = version.id

    def make_current(self, machine: str, version: str) -> None:
        self.get(machine, version)  # NotFound unless deployed
        self.machines[machine].current = version

    def add_migration(self, migration: Migration) -> None:
        deployment = self.machines.setdefault(migration.machine, Deployment(migration.machine))
        deployment.migrations = [m for m in deployment.migrations if m.id != migration.id] + [
            migration
        ]

    def remove_migration(self, machine: str, migration_id: str) -> None:
        deployment = self.machines.get(machine)
        if deployment is not None:
            deployment.migrations = [m for m in deployment.migrations if m.id != migration_id]

    def migrations(self, machine: str) -> list[Migration]:
        deployment = self.machines.get(machine)
        return deployment.migrations if deployment is not None else []

    def get(self, machine: str, version: str | None = None) -> Version:
        deployment = self.machines.get(machine)
        if deployment is None or deployment.current is None:
            raise NotFound("machine-not-found", f"machine {machine!r} is not deployed")
        found = deployment.versions.get(version or deployment.current)
        if found is None:
            raise NotFound(
                "machine-version-not-found", f"machine {machine!r} has no version {version!r}"
            )
        return found
