"""Scope checks and impersonation through x-statebacked-act."""

from __future__ import annotations

import pytest

from backstate.auth import SCOPE_PRESETS, AuthError, Principal, Scope, act_as, require_scope

PRODUCTION = Principal("org_a", "sbk_p", frozenset(SCOPE_PRESETS["production"]), {"sub": "u"})
KEY_ADMIN = Principal("org_a", "sbk_k", frozenset({Scope.ORG_KEYS_WRITE}), {})
HUMAN_ADMIN = Principal("org_a", None, frozenset(), {"sub": "usr_1"}, admin=True)


def test_require_scope() -> None:
    require_scope(PRODUCTION, Scope.STATE_READ)
    require_scope(HUMAN_ADMIN, Scope.TOKENS_ADMIN)
    with pytest.raises(AuthError) as caught:
        require_scope(PRODUCTION, Scope.MACHINES_WRITE)
    assert (caught.value.code, caught.value.status) == ("missing-scope", 403)
    assert "machines.write" in caught.value.message


@pytest.mark.parametrize("principal", [KEY_ADMIN, HUMAN_ADMIN])
def test_key_writers_and_admins_may_act_as_anyone(principal: Principal) -> None:
    assert act_as(principal, '{"sub": "alice", "roles": ["x"]}') == {"sub": "alice", "roles": ["x"]}


def test_others_may_not_impersonate() -> None:
    with pytest.raises(AuthError) as caught:
        act_as(PRODUCTION, '{"sub": "alice"}')
    assert (caught.value.code, caught.value.status) == ("missing-scope", 403)


@pytest.mark.parametrize("header", ["not json", '["sub"]', '"alice"', "null"])
def test_the_header_must_be_a_json_object(header: str) -> None:
    with pytest.raises(AuthError) as caught:
        act_as(KEY_ADMIN, header)
    assert (caught.value.code, caught.value.status) == ("invalid-act", 400)
    assert caught.value.parameter == "x-statebacked-act"
