"""Keys, scopes and the ids State Backed prints: ``org_…``, ``sbk_…``, ``sbsec_…``.

A key's secret is kept as it is, because request tokens are HS256 over its UTF-8
bytes; ``Key`` leaves it out of ``repr`` so that logging a key never prints it.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from ._errors import AuthError


class Scope(StrEnum):
    """The spec's KeyScope enum plus ``indexes.read``, which index queries require."""

    EVENTS_WRITE = "events.write"
    EVENTS_READ = "events.read"
    STATE_READ = "state.read"
    INSTANCES_READ = "instances.read"
    INSTANCES_WRITE = "instances.write"
    INSTANCES_ADMIN = "instances.admin"
    INDEXES_READ = "indexes.read"
    MACHINES_READ = "machines.read"
    MACHINES_WRITE = "machines.write"
    MACHINES_ADMIN = "machines.admin"
    MACHINE_VERSIONS_READ = "machine-versions.read"
    MACHINE_VERSIONS_WRITE = "machine-versions.write"
    ANALYTICS_READ = "analytics.read"
    ORG_READ = "org.read"
    ORG_WRITE = "org.write"
    ORG_KEYS_WRITE = "org.keys.write"
    ORG_MEMBERS_WRITE = "org-members.write"
    LOGS_READ = "logs.read"
    TOKENS_ADMIN = "tokens.admin"
    SECRETS_ADMIN = "org.secrets.admin"  # backstate's: set, list and delete secrets


SCOPE_PRESETS: dict[str, tuple[Scope, ...]] = {
    "production": (
        Scope.EVENTS_WRITE,
        Scope.STATE_READ,
        Scope.INSTANCES_WRITE,
        Scope.INDEXES_READ,
    ),
    "ci": (
        Scope.MACHINES_READ,
        Scope.MACHINES_WRITE,
        Scope.MACHINE_VERSIONS_READ,
        Scope.MACHINE_VERSIONS_WRITE,
    ),
}


def parse_key_scopes(
    use: str | None = None, scopes: Sequence[str] | None = None
) -> tuple[Scope, ...]:
    """The scopes of a ``POST /keys`` body: a preset name or an explicit list, not both.

    Returned deduplicated, in the enum's order.
    """
    if use is not None and scopes is not None:
        raise AuthError("use-and-scopes", 400, "give either use or scopes, not both", "use")
    if use is not None:
        if use not in SCOPE_PRESETS:
            raise AuthError(
                "unknown-use", 400, f"use must be one of {', '.join(SCOPE_PRESETS)}", "use"
            )
        return SCOPE_PRESETS[use]
    if not scopes:
        raise AuthError("missing-scopes", 400, "give use or a non-empty scopes list", "scopes")
    known = {scope.value for scope in Scope}
    unknown = [scope for scope in scopes if scope not in known]
    if unknown:
        raise AuthError(
            "unknown-scope",
            400,
            f"unknown scope(s) {', '.join(map(repr, unknown))}; valid: {', '.join(Scope)}",
            "scopes",
        )
    wanted = set(scopes)
    return tuple(scope for scope in Scope if scope.value in wanted)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_org_id() -> str:
    return "org_" + b64url(uuid.uuid4().bytes)


def new_key_id() -> str:
    return "sbk_" + b64url(secrets.token_bytes(16))


def new_key_secret() -> str:
    return "sbsec_" + b64url(secrets.token_bytes(32))


@dataclass(frozen=True, slots=True)
class Key:
    id: str
    org_id: str
    name: str
    scopes: tuple[Scope, ...]
    secret: str = field(repr=False)
    created_at: int  # epoch milliseconds, like the store's rows


def new_key(org_id: str, name: str, scopes: Sequence[Scope], created_at: int) -> Key:
    """A key with a fresh id and secret; show ``secret`` to its creator once."""
    ordered = tuple(scope for scope in Scope if scope in set(scopes))
    return Key(new_key_id(), org_id, name, ordered, new_key_secret(), created_at)
