"""What the API returns, as frozen dataclasses parsed from its JSON.

Parsers ignore fields they do not know, so a newer server does not break an older client.
Dates arrive as ISO-8601 strings (or, from the identity routes, epoch milliseconds) and
become aware ``datetime`` objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")

StateValue = str | dict[str, Any]
Event = str | dict[str, Any]


def parse_time(value: Any) -> datetime:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    """The ISO-8601 form JavaScript's ``toISOString()`` writes (the API's dates)."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def state_strings(value: StateValue) -> tuple[str, ...]:
    """Every active state path, ancestors first, as XState's ``toStrings``:
    ``{"a": {"b": "c", "d": {}}}`` is ``("a", "a.b", "a.b.c", "a.d")``."""
    if isinstance(value, str):
        return (value,)
    paths: list[str] = []
    for key, child in value.items():
        paths.append(key)
        if isinstance(child, str | dict) and child != {}:
            paths.extend(f"{key}.{path}" for path in state_strings(child))
    return tuple(paths)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; pass ``cursor`` back for the next (``None``: the last)."""

    items: list[T]
    cursor: str | None = None


@dataclass(frozen=True)
class NoTransition:
    """Why a sent event selected no transition (backstate's ``noTransition`` extension
    of a send-event answer). ``reason``: ``no-transition`` (no active state has one for
    the event's type), ``guards-false`` (every candidate's guard, named in ``guards``,
    returned false) or ``done`` (the instance had finished)."""

    reason: str
    message: str
    event_type: str
    states: tuple[str, ...] = ()
    guards: tuple[str, ...] = ()
    accepts: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, body: Any) -> NoTransition | None:
        if not isinstance(body, dict):
            return None
        return cls(
            reason=str(body.get("reason")),
            message=str(body.get("message")),
            event_type=str(body.get("eventType")),
            states=tuple(body.get("states") or ()),
            guards=tuple(body.get("guards") or ()),
            accepts=tuple(body.get("accepts") or ()),
        )


@dataclass(frozen=True)
class State:
    """An instance's state as callers see it: only ``context.public`` leaves it.
    ``no_transition``: set on the answer to an event that changed nothing, saying why."""

    value: StateValue
    public_context: dict[str, Any]
    tags: frozenset[str]
    done: bool
    ts: int  # when this state was committed, epoch milliseconds
    no_transition: NoTransition | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> State:
        public = body.get("publicContext")
        return cls(
            value=body["state"],
            public_context=public if isinstance(public, dict) else {},
            tags=frozenset(body.get("tags") or ()),
            done=bool(body.get("done")),
            ts=int(body.get("ts") or 0),
            no_transition=NoTransition.from_json(body.get("noTransition")),
        )

    @property
    def states(self) -> tuple[str, ...]:
        return state_strings(self.value)

    def matches(self, path: str) -> bool:
        """Whether the state path (dotted, ``"Playing.Awaiting x move"``) is active."""
        return path in self.states

    def has_tag(self, tag: str) -> bool:
        return tag in self.tags


@dataclass(frozen=True)
class Progress:
    """A partial result (``data``) that the running service ``invoke_id`` of a subscribed
    instance published (backstate's extension, ``instance-progress`` on /rt): not a
    state, never stored and never delivered again (docs/runtime.md#streamed-progress)."""

    invoke_id: str
    data: Any
    ts: int  # when it was published, epoch milliseconds

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Progress:
        return cls(str(body["invokeId"]), body.get("data"), int(body.get("ts") or 0))


@dataclass(frozen=True)
class MachineVersionInfo:
    id: str
    created_at: datetime | None = None
    client_info: str | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> MachineVersionInfo:
        created = body.get("createdAt")
        return cls(
            id=body["id"],
            created_at=parse_time(created) if created is not None else None,
            client_info=body.get("clientInfo"),
        )


def _version(body: Any) -> MachineVersionInfo | None:
    return MachineVersionInfo.from_json(body) if isinstance(body, dict) else None


@dataclass(frozen=True)
class MachineInfo:
    slug: str
    created_at: datetime
    current_version: MachineVersionInfo | None
    indexes: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, body: dict[str, Any], slug: str | None = None) -> MachineInfo:
        return cls(
            slug=body.get("slug") or slug or "",
            created_at=parse_time(body["createdAt"]),
            current_version=_version(body.get("currentVersion")),
            indexes=tuple(body.get("indexes") or ()),
        )


@dataclass(frozen=True)
class ProvisionalUpload:
    """A provisionally created version or migration: upload its code to
    ``code_upload_url`` with ``code_upload_fields``, then finalize it with ``id``."""

    id: str
    code_upload_url: str
    code_upload_fields: dict[str, str]
    gzip: bool = False  # asked for with ?gzip: the code is uploaded gzipped


@dataclass(frozen=True)
class InstanceInfo:
    slug: str
    created_at: datetime
    status: Literal["running", "paused"]
    machine_version: MachineVersionInfo | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> InstanceInfo:
        return cls(
            slug=body["slug"],
            created_at=parse_time(body["createdAt"]),
            status=body.get("status", "running"),
            machine_version=_version(body.get("machineVersion")),
        )


@dataclass(frozen=True)
class AdminState:
    """``GET .../admin``: the whole context, status and versions; no authorizer runs."""

    value: StateValue
    context: dict[str, Any]
    tags: frozenset[str]
    done: bool
    status: Literal["running", "paused"]
    machine_version: MachineVersionInfo | None
    desired_machine_version: MachineVersionInfo | None
    created_at: datetime | None
    ts: int | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> AdminState:
        created = body.get("createdAt")
        return cls(
            value=body["state"],
            context=body.get("context") or {},
            tags=frozenset(body.get("tags") or ()),
            done=bool(body.get("done")),
            status=body.get("status", "running"),
            machine_version=_version(body.get("machineVersion")),
            desired_machine_version=_version(body.get("desiredMachineVersion")),
            created_at=parse_time(created) if created is not None else None,
            ts=body.get("ts"),
        )

    @property
    def states(self) -> tuple[str, ...]:
        return state_strings(self.value)


@dataclass(frozen=True)
class Transition:
    """One row of an instance's history: the event and the state it led to."""

    created_at: datetime
    state: StateValue
    event: Event

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Transition:
        return cls(parse_time(body["createdAt"]), body["state"], body["event"])


IndexValue = str | int | float


@dataclass(frozen=True)
class UpgradeReport:
    """backstate's dry-run upgrade: the migration chain, how many recorded transitions
    were replayed on the target version, and the first that came out differently
    (``diverged_at``, its history position, with the ``event`` and both results)."""

    from_version_id: str
    to_version_id: str
    migration_path: tuple[str, ...]
    replayed: int
    diverged_at: int | None = None
    event: Event | None = None
    expected: dict[str, Any] | None = None
    actual: dict[str, Any] | None = None
    timers: tuple[str, ...] = ()  # what upgrading would do to its after timers

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> UpgradeReport:
        return cls(
            from_version_id=body["fromMachineVersionId"],
            to_version_id=body["toMachineVersionId"],
            migration_path=tuple(body.get("migrationPath") or ()),
            replayed=int(body.get("replayed") or 0),
            diverged_at=body.get("divergedAt"),
            event=body.get("event"),
            expected=body.get("expected"),
            actual=body.get("actual"),
            timers=tuple(body.get("timers") or ()),
        )


@dataclass(frozen=True)
class IndexEntry:
    slug: str
    index_value: IndexValue

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> IndexEntry:
        return cls(body["slug"], body["indexValue"])


@dataclass(frozen=True)
class LogEntry:
    timestamp: datetime
    org_id: str
    machine_name: str
    instance_name: str | None
    machine_version_id: str | None
    output_type: Literal["stdout", "stderr"]
    log: str

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> LogEntry:
        return cls(
            timestamp=parse_time(body["timestamp"]),
            org_id=body.get("orgId", ""),
            machine_name=body.get("machineName", ""),
            instance_name=body.get("instanceName"),
            machine_version_id=body.get("machineVersionId"),
            output_type=body.get("outputType", "stdout"),
            log=body.get("log", ""),
        )


@dataclass(frozen=True)
class Logs:
    """One batch of logs; ask again from ``max_timestamp`` for the next."""

    entries: list[LogEntry]
    max_timestamp: datetime

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Logs:
        return cls(
            [LogEntry.from_json(e) for e in body.get("logs") or ()],
            parse_time(body["maxTimestamp"]),
        )


@dataclass(frozen=True)
class OrgInfo:
    id: str
    name: str
    role: str
    created_at: datetime
    limits: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> OrgInfo:
        return cls(
            id=body["id"],
            name=body.get("name", ""),
            role=body.get("role", ""),
            created_at=parse_time(body["createdAt"]),
            limits=body.get("limits") or {},
        )


@dataclass(frozen=True)
class CreatedKey:
    """A new key; ``key`` is its secret, shown only this once."""

    id: str
    key: str = field(repr=False)


@dataclass(frozen=True)
class CreatedOrg:
    """A new org; ``admin_key`` is its admin key (backstate's ``POST /orgs`` returns one,
    because a key reaches a single org)."""

    id: str
    admin_key: CreatedKey | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> CreatedOrg:
        admin = body.get("adminKey")
        return cls(
            body["id"],
            CreatedKey(admin["id"], admin["key"]) if isinstance(admin, dict) else None,
        )


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> KeyInfo:
        return cls(
            body["id"],
            body.get("name", ""),
            tuple(body.get("scopes") or ()),
            parse_time(body["createdAt"]),
        )


@dataclass(frozen=True)
class IdentityProviderInfo:
    """A configured IdP (its key is never shown)."""

    algs: tuple[str, ...]
    mapping: dict[str, Any]
    aud: str | None = None
    iss: str | None = None
    jwks_url: str | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> IdentityProviderInfo:
        return cls(
            algs=tuple(body.get("algs") or ()),
            mapping=body.get("mapping") or {},
            aud=body.get("aud"),
            iss=body.get("iss"),
            jwks_url=body.get("jwksUrl"),
        )


@dataclass(frozen=True)
class TokenProviderInfo:
    service: str
    key_id: str
    mapping: dict[str, Any]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> TokenProviderInfo:
        return cls(body["service"], body["keyId"], body.get("mapping") or {})


@dataclass(frozen=True)
class DeadLetter:
    """A message between instances that exhausted its retries (backstate's extension).
    ``from_machine``/``from_instance`` name the sending instance, or are None when the
    sender was not one (``sender`` then says what it was)."""

    id: int
    created_at: datetime
    to_machine: str
    to_instance: str
    from_machine: str | None
    from_instance: str | None
    sender: str | None
    event: dict[str, Any]
    error: str
    attempts: int

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> DeadLetter:
        sent_by = body.get("from") or {}
        return cls(
            id=int(body["id"]),
            created_at=parse_time(body["createdAt"]),
            to_machine=body["to"]["machineName"],
            to_instance=body["to"]["machineInstanceName"],
            from_machine=sent_by.get("machineName"),
            from_instance=sent_by.get("machineInstanceName"),
            sender=sent_by.get("sender"),
            event=body.get("event") or {},
            error=body.get("error", ""),
            attempts=int(body.get("attempts", 0)),
        )


@dataclass(frozen=True)
class MigrationInfo:
    """A migration between two versions of a machine (backstate's extension);
    ``code`` only from ``migrations.get``."""

    id: str
    from_version_id: str
    to_version_id: str
    created_at: datetime
    code: str | None = field(default=None, repr=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> MigrationInfo:
        return cls(
            id=body["id"],
            from_version_id=body["fromMachineVersionId"],
            to_version_id=body["toMachineVersionId"],
            created_at=parse_time(body["createdAt"]),
            code=body.get("code"),
        )


@dataclass(frozen=True)
class IndexInfo:
    """An index of a machine (backstate's extension): ``state`` is ``ready``,
    ``backfilling`` (an index added to a machine with instances, being filled in) or
    ``failed`` (``error`` says why). ``selector`` and the progress (``done`` of
    ``total`` instances, ``skipped`` values that could not be indexed) are known for an
    added index; one declared when its machine was created has its versions' selectors."""

    name: str
    state: str
    selector: str | None = None
    done: int | None = None
    total: int | None = None
    skipped: int | None = None
    skip_note: str | None = None
    error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> IndexInfo:
        created, updated = body.get("createdAt"), body.get("updatedAt")
        return cls(
            name=body["name"],
            state=body["state"],
            selector=body.get("selector"),
            done=body.get("done"),
            total=body.get("total"),
            skipped=body.get("skipped"),
            skip_note=body.get("skipNote"),
            error=body.get("error"),
            created_at=parse_time(created) if created else None,
            updated_at=parse_time(updated) if updated else None,
        )


@dataclass(frozen=True)
class Timer:
    """A pending timer of an instance (an ``after`` transition or a delayed send)."""

    id: str
    due_at: datetime
    event: dict[str, Any]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Timer:
        return cls(id=body["id"], due_at=parse_time(body["dueAt"]), event=body.get("event") or {})
