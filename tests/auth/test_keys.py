"""Ids, keys and the scope rules of POST /keys."""

from __future__ import annotations

import base64
import re
import uuid

import pytest

from backstate.auth import SCOPE_PRESETS, AuthError, Scope, new_key, new_org_id, parse_key_scopes

SPEC_SCOPES = [
    "events.write",
    "events.read",
    "state.read",
    "instances.read",
    "instances.write",
    "instances.admin",
    "machines.read",
    "machines.write",
    "machines.admin",
    "machine-versions.read",
    "machine-versions.write",
    "analytics.read",
    "org.read",
    "org.write",
    "org.keys.write",
    "org-members.write",
    "logs.read",
    "tokens.admin",
]


def test_scopes_are_the_spec_enum_plus_indexes_read_and_secrets() -> None:
    assert sorted(Scope) == sorted([*SPEC_SCOPES, "indexes.read", "org.secrets.admin"])


def test_presets() -> None:
    assert SCOPE_PRESETS["production"] == (
        Scope.EVENTS_WRITE,
        Scope.STATE_READ,
        Scope.INSTANCES_WRITE,
        Scope.INDEXES_READ,
    )
    assert set(SCOPE_PRESETS["ci"]) == {
        "machines.read",
        "machines.write",
        "machine-versions.read",
        "machine-versions.write",
    }


def test_org_ids_are_base64url_uuid_bytes() -> None:
    org_id = new_org_id()
    assert re.fullmatch(r"org_[A-Za-z0-9_-]{22}", org_id)
    raw = base64.urlsafe_b64decode(org_id.removeprefix("org_") + "==")
    assert uuid.UUID(bytes=raw).version == 4


def test_new_keys_are_fresh_and_well_formed() -> None:
    first = new_key("org_x", "ci", [Scope.MACHINES_WRITE, Scope.MACHINES_READ], created_at=5)
    second = new_key("org_x", "ci", [Scope.MACHINES_READ], created_at=5)
    assert re.fullmatch(r"sbk_[A-Za-z0-9_-]{22}", first.id)
    assert re.fullmatch(r"sbsec_[A-Za-z0-9_-]{43}", first.secret)
    assert first.id != second.id and first.secret != second.secret
    assert first.scopes == (Scope.MACHINES_READ, Scope.MACHINES_WRITE)
    assert (first.org_id, first.name, first.created_at) == ("org_x", "ci", 5)


def test_a_key_never_shows_its_secret_in_repr() -> None:
    key = new_key("org_x", "prod", SCOPE_PRESETS["production"], created_at=0)
    assert key.secret not in repr(key)
    assert key.id in repr(key)


@pytest.mark.parametrize("use", ["production", "ci"])
def test_use_gives_its_preset(use: str) -> None:
    assert parse_key_scopes(use=use) == SCOPE_PRESETS[use]


def test_scopes_are_deduplicated_in_enum_order() -> None:
    assert parse_key_scopes(scopes=["state.read", "events.write", "state.read"]) == (
        Scope.EVENTS_WRITE,
        Scope.STATE_READ,
    )


@pytest.mark.parametrize(
    ("use", "scopes", "code", "parameter"),
    [
        (None, ["state.read", "bogus.write"], "unknown-scope", "scopes"),
        (None, ["org-keys.write"], "unknown-scope", "scopes"),  # the docs' spelling
        ("production", ["state.read"], "use-and-scopes", "use"),
        ("staging", None, "unknown-use", "use"),
        (None, None, "missing-scopes", "scopes"),
        (None, [], "missing-scopes", "scopes"),
    ],
)
def test_bad_scope_requests(
    use: str | None, scopes: list[str] | None, code: str, parameter: str
) -> None:
    with pytest.raises(AuthError) as caught:
        parse_key_scopes(use=use, scopes=scopes)
    assert (caught.value.code, caught.value.status, caught.value.parameter) == (
        code,
        400,
        parameter,
    )


def test_unknown_scope_error_names_the_culprit() -> None:
    with pytest.raises(AuthError, match=r"'bogus\.write'"):
        parse_key_scopes(scopes=["bogus.write"])
