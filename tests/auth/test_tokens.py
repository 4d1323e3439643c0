"""Request tokens: signToken's exact output, and every reason to refuse one."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest

from backstate.auth import (
    API_AUDIENCE,
    CLOCK_SKEW_S,
    SCOPE_PRESETS,
    AuthError,
    Key,
    Scope,
    new_key,
    sign_token,
    verify_request_token,
)

from .idp import compact, rsa_key, sign

NOW = 1_800_000_000
KEY = new_key("org_a", "prod", SCOPE_PRESETS["production"], created_at=0)
OTHER = new_key("org_a", "other", SCOPE_PRESETS["ci"], created_at=0)
KEYS = {KEY.id: KEY, OTHER.id: OTHER}

# Made by jose 5 exactly as @statebacked/token's signToken calls it:
# signToken({stateBackedKeyId: "sbk_abc", stateBackedSecretKey: "sbsec_xyz"},
#   {sub: "ü☃", n: [1, {x: null}], t: true}, {expires: {at: 2000000000}}) at iat 1795849505.
JOSE_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsImtpZCI6InNia19hYmMifQ"
    ".eyJhY3QiOnsic3ViIjoiw7zimIMiLCJuIjpbMSx7IngiOm51bGx9XSwidCI6dHJ1ZX0sImF1ZCI6Imh0dHBzOi8vYXBp"
    "LnN0YXRlYmFja2VkLmRldi8iLCJleHAiOjIwMDAwMDAwMDAsImlzcyI6Imh0dHBzOi8vc2JrX2FiYy5jbGllbnQuc3Rh"
    "dGViYWNrZWQuZGV2LyIsImlhdCI6MTc5NTg0OTUwNX0"
    ".aOd8h-dQxBzPU9hSW_bSed1TVgplcJXxtB1SeMvNh90"
)


def part(token: str, index: int) -> Any:
    segment = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"act": {"sub": "u1"}, "aud": API_AUDIENCE, "iat": NOW, "exp": NOW + 60}
    return {name: value for name, value in {**base, **overrides}.items() if value is not None}


def hs256(payload: dict[str, Any], key: Key = KEY, secret: str | None = None) -> str:
    return sign(payload, (secret or key.secret).encode(), "HS256", kid=key.id)


def rejection(token: str | None, now: float = NOW) -> AuthError:
    with pytest.raises(AuthError) as caught:
        verify_request_token(token, KEYS.get, now=now)
    assert caught.value.status == 401
    return caught.value


def test_sign_token_matches_jose_byte_for_byte() -> None:
    token = sign_token(
        "sbk_abc",
        "sbsec_xyz",
        {"sub": "ü☃", "n": [1, {"x": None}], "t": True},
        expires_at=2_000_000_000,
        now=1_795_849_505.9,
    )
    assert token == JOSE_TOKEN


def test_sign_token_shape() -> None:
    token = sign_token(KEY.id, KEY.secret, {"sub": "u1"}, expires_in_s=3600, now=NOW + 0.5)
    assert part(token, 0) == {"alg": "HS256", "kid": KEY.id}
    assert list(part(token, 1).items()) == [
        ("act", {"sub": "u1"}),
        ("aud", "https://api.statebacked.dev/"),
        ("exp", NOW + 3600),
        ("iss", f"https://{KEY.id}.client.statebacked.dev/"),
        ("iat", NOW),
    ]
    decoded = jwt.decode(
        token, KEY.secret.encode(), ["HS256"], audience=API_AUDIENCE, options={"verify_iat": False}
    )
    assert decoded["act"] == {"sub": "u1"}


def test_sign_token_issuer_and_datetime_expiry() -> None:
    at = datetime.fromtimestamp(NOW + 99.7, tz=UTC)
    token = sign_token(KEY.id, KEY.secret, {}, expires_at=at, issuer="https://me.example/", now=NOW)
    assert part(token, 1)["iss"] == "https://me.example/"
    assert part(token, 1)["exp"] == NOW + 99


@pytest.mark.parametrize("expiry", [{}, {"expires_in_s": 1, "expires_at": NOW}])
def test_sign_token_needs_exactly_one_expiry(expiry: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        sign_token(KEY.id, KEY.secret, {}, now=NOW, **expiry)


def test_a_signed_token_gives_its_principal() -> None:
    token = sign_token(KEY.id, KEY.secret, {"sub": "u1", "role": "x"}, expires_in_s=60, now=NOW)
    principal = verify_request_token(token, KEYS.get, now=NOW + 1)
    assert principal.org_id == "org_a"
    assert principal.key_id == KEY.id
    assert principal.scopes == frozenset(SCOPE_PRESETS["production"])
    assert principal.auth_context == {"sub": "u1", "role": "x"}
    assert not principal.admin
    assert principal.has_scope(Scope.STATE_READ)


def test_top_level_sub_fills_in_when_act_has_none() -> None:
    token = hs256(claims(act={"role": "x"}, sub="top"))
    assert verify_request_token(token, KEYS.get, now=NOW).auth_context == {
        "role": "x",
        "sub": "top",
    }
    token = hs256(claims(act={"sub": "inner"}, sub="top"))
    assert verify_request_token(token, KEYS.get, now=NOW).auth_context == {"sub": "inner"}
    token = hs256(claims(act=None, sub="top"))
    assert verify_request_token(token, KEYS.get, now=NOW).auth_context == {"sub": "top"}


def test_an_audience_list_that_holds_ours_passes() -> None:
    token = hs256(claims(aud=["https://other/", API_AUDIENCE]))
    assert verify_request_token(token, KEYS.get, now=NOW).key_id == KEY.id


def test_clock_skew_is_tolerated() -> None:
    token = hs256(claims(iat=NOW + 3, nbf=NOW + 3, exp=NOW))
    assert verify_request_token(token, KEYS.get, now=NOW + CLOCK_SKEW_S - 1).key_id == KEY.id


@pytest.mark.parametrize("token", [None, ""])
def test_missing_token(token: str | None) -> None:
    assert rejection(token).code == "missing-token"


@pytest.mark.parametrize(
    "token",
    [
        "abc",
        "a.b.c",
        "eyJhbGciOiJIUzI1NiJ9.!!!.sig",
        compact({"alg": "HS256", "kid": KEY.id}, {"a": 1})[:-1] + "*",
    ],
)
def test_malformed_tokens(token: str) -> None:
    assert rejection(token).code == "malformed-token"


def test_payload_must_be_a_json_object() -> None:
    token = jwt.api_jws.encode(b"[1,2]", KEY.secret.encode(), "HS256", headers={"kid": KEY.id})
    assert rejection(token).code == "malformed-token"


def test_act_must_be_an_object() -> None:
    assert rejection(hs256(claims(act="u1"))).code == "malformed-token"


def test_no_kid() -> None:
    token = sign(claims(), KEY.secret.encode(), "HS256")
    assert rejection(token).code == "malformed-token"


def test_alg_none_is_refused() -> None:
    token = compact({"alg": "none", "kid": KEY.id}, claims())
    assert rejection(token).code == "unsupported-alg"


def test_other_hmac_algs_are_refused() -> None:
    token = sign(claims(), KEY.secret.encode(), "HS384", kid=KEY.id)
    assert rejection(token).code == "unsupported-alg"
    token = compact({"alg": "HS512", "kid": KEY.id}, claims(), b"s" * 64)
    assert rejection(token).code == "unsupported-alg"


def test_public_key_algs_are_refused() -> None:
    token = sign(claims(), rsa_key(), "RS256", kid=KEY.id)
    assert rejection(token).code == "unsupported-alg"


def test_unknown_kid() -> None:
    stranger = new_key("org_a", "gone", SCOPE_PRESETS["production"], created_at=0)
    assert rejection(hs256(claims(), stranger)).code == "unknown-key"


def test_bad_signature() -> None:
    assert rejection(hs256(claims(), KEY, secret=OTHER.secret)).code == "bad-signature"


def test_a_tampered_payload_fails_the_signature() -> None:
    header, _, signature = hs256(claims()).split(".")
    forged = compact({"alg": "HS256", "kid": KEY.id}, claims(act={"sub": "admin"})).split(".")[1]
    assert rejection(f"{header}.{forged}.{signature}").code == "bad-signature"


def test_expired() -> None:
    token = hs256(claims(exp=NOW - 60))
    assert rejection(token).code == "token-expired"
    assert rejection(hs256(claims(exp=NOW)), now=NOW + CLOCK_SKEW_S).code == "token-expired"


def test_exp_is_required() -> None:
    assert rejection(hs256(claims(exp=None))).code == "missing-exp"


def test_exp_must_be_a_number() -> None:
    assert rejection(hs256(claims(exp="tomorrow"))).code == "malformed-token"


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_not_yet_valid(claim: str) -> None:
    token = hs256(claims(**{claim: NOW + 600, "exp": NOW + 1200}))
    assert rejection(token).code == "token-not-yet-valid"


@pytest.mark.parametrize("aud", [None, "https://api.example/", ["https://a/", "https://b/"]])
def test_wrong_audience(aud: Any) -> None:
    token = hs256({**claims(), "aud": aud} if aud is not None else claims(aud=None))
    assert rejection(token).code == "wrong-audience"
