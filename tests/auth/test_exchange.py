"""Token exchange end to end: IdP token in, a request token for the org out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from backstate.auth import (
    ACCESS_TOKEN_TYPE,
    SCOPE_PRESETS,
    TOKEN_EXCHANGE_GRANT_TYPE,
    AuthError,
    IdentityProvider,
    JwksCache,
    Key,
    Principal,
    TokenExchangeError,
    TokenProvider,
    exchange,
    new_key,
    verify_request_token,
)

from .idp import (
    b64url,
    compact,
    ec_key,
    ed25519_key,
    hs256_by_hand,
    public_jwk,
    public_pem,
    rsa_key,
    sign,
)

NOW = 1_800_000_000.0
ORG = "org_uHvZHpF4STWvMg8BKVCUTg"
HS_SECRET = b"the supabase project's jwt secret, long enough for HS384 and HS512 too"
JWKS_URL = "https://tenant.auth0.example/.well-known/jwks.json"


class Directory:
    """One org's keys, IdPs and token providers, and a JWKS endpoint, as the server keeps them."""

    def __init__(self) -> None:
        self.key = new_key(ORG, "exchange", SCOPE_PRESETS["production"], created_at=0)
        self.keys: dict[str, Key] = {self.key.id: self.key}
        self.idps = [
            IdentityProvider(
                aud="authenticated",
                iss="https://proj.supabase.example/auth/v1",
                algs=("HS256",),
                mapping={"sub.$": "$.sub", "email.$": "$.email"},
                key=b64url(HS_SECRET),
            ),
            IdentityProvider(
                aud="https://tenant.auth0.example/api/v2/",
                iss="https://tenant.auth0.example/",
                algs=("RS256",),
                mapping={"sub.$": "$.sub", "groups.$": "$.groups[*]"},
                jwks_url=JWKS_URL,
            ),
        ]
        self.providers = {
            "web": TokenProvider(
                "web", self.key.id, {"sub.$": "$.sub", "email.$": "$.email", "app": "web"}
            ),
        }
        self.jwks_keys = [public_jwk(rsa_key("k1"), "k1")]
        self.fetches = 0
        self.jwks = JwksCache(self.fetch, ttl_s=600, min_refetch_s=30)

    def fetch(self, url: str) -> Mapping[str, Any]:
        assert url == JWKS_URL
        self.fetches += 1
        return {"keys": list(self.jwks_keys)}

    def exchange(self, form: Mapping[str, str], now: float = NOW) -> dict[str, str]:
        return exchange(
            form,
            org_lookup=lambda org_id: org_id == ORG,
            idp_lookup=lambda org_id: self.idps if org_id == ORG else [],
            provider_lookup=lambda org_id, service: self.providers.get(service),
            key_lookup=self.keys.get,
            jwks=self.jwks,
            now=now,
        )

    def principal(self, access_token: str, now: float = NOW) -> Principal:
        return verify_request_token(access_token, self.keys.get, now=now)


def form(subject_token: str, /, service: str = "web", **overrides: str | None) -> dict[str, str]:
    fields: dict[str, str | None] = {
        "grant_type": TOKEN_EXCHANGE_GRANT_TYPE,
        "audience": f"https://tokens.statebacked.dev/{ORG}/{service}",
        "requested_token_type": ACCESS_TOKEN_TYPE,
        "subject_token": subject_token,
        **overrides,
    }
    return {name: value for name, value in fields.items() if value is not None}


def supabase_claims(**overrides: Any) -> dict[str, Any]:
    claims = {
        "aud": "authenticated",
        "iss": "https://proj.supabase.example/auth/v1",
        "sub": "user-1",
        "email": "a@example.com",
        "role": "authenticated",
        "iat": int(NOW),
        "exp": int(NOW) + 600,
    }
    return {name: value for name, value in {**claims, **overrides}.items() if value is not None}


def auth0_claims(**overrides: Any) -> dict[str, Any]:
    claims = {
        "aud": ["https://tenant.auth0.example/api/v2/", "https://tenant.auth0.example/userinfo"],
        "iss": "https://tenant.auth0.example/",
        "sub": "auth0|42",
        "groups": ["admins", "ops"],
        "iat": int(NOW),
        "exp": int(NOW) + 7200,
    }
    return {**claims, **overrides}


def refusal(directory: Directory, fields: Mapping[str, str]) -> TokenExchangeError:
    with pytest.raises(TokenExchangeError) as caught:
        directory.exchange(fields)
    return caught.value


def test_hs256_exchange_end_to_end() -> None:
    directory = Directory()
    response = directory.exchange(form(sign(supabase_claims(), HS_SECRET, "HS256")))
    assert response["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert response["token_type"] == "Bearer"
    principal = directory.principal(response["access_token"])
    assert principal.org_id == ORG
    assert principal.key_id == directory.key.id
    assert principal.scopes == frozenset(SCOPE_PRESETS["production"])
    assert principal.auth_context == {"sub": "user-1", "email": "a@example.com", "app": "web"}


def test_the_issued_token_expires_with_the_subject_token_or_within_an_hour() -> None:
    directory = Directory()
    short = directory.exchange(form(sign(supabase_claims(), HS_SECRET, "HS256")))
    long = directory.exchange(form(sign(supabase_claims(exp=int(NOW) + 86400), HS_SECRET, "HS256")))
    for token, exp in ((short, int(NOW) + 600), (long, int(NOW) + 3600)):
        with pytest.raises(AuthError, match="token-expired"):
            directory.principal(token["access_token"], now=exp + 10)
        directory.principal(token["access_token"], now=exp - 1)


def test_rs256_via_jwks_follows_key_rotation() -> None:
    directory = Directory()
    first = sign(auth0_claims(), rsa_key("k1"), "RS256", kid="k1")
    principal = directory.principal(directory.exchange(form(first))["access_token"])
    assert principal.auth_context == {"sub": "auth0|42", "app": "web"}
    assert directory.fetches == 1

    directory.jwks_keys = [public_jwk(rsa_key("k2"), "k2")]  # the IdP rotates
    rotated = sign(auth0_claims(), rsa_key("k2"), "RS256", kid="k2")
    later = NOW + 60
    directory.exchange(form(rotated), now=later)
    assert directory.fetches == 2
    directory.exchange(form(rotated), now=later + 1)
    assert directory.fetches == 2
    with pytest.raises(TokenExchangeError) as caught:
        directory.exchange(form(first), now=later + 2)
    assert caught.value.reason == "unknown-kid"


def test_token_provider_mapping_sees_only_the_idp_mapping_output() -> None:
    directory = Directory()
    directory.providers["groups"] = TokenProvider(
        "groups", directory.key.id, {"who.$": "$.sub", "groups.$": "$.groups", "role.$": "$.role"}
    )
    token = sign(auth0_claims(role="superuser"), rsa_key("k1"), "RS256", kid="k1")
    response = directory.exchange(form(token, service="groups"))
    assert directory.principal(response["access_token"]).auth_context == {
        "who": "auth0|42",
        "groups": ["admins", "ops"],
    }


@pytest.mark.parametrize(
    ("alg", "private", "key"),
    [
        ("ES256", ec_key(), b64url(public_pem(ec_key()))),
        ("ES512", ec_key("P-521"), b64url(json.dumps(public_jwk(ec_key("P-521"))).encode())),
        ("EdDSA", ed25519_key(), b64url(public_pem(ed25519_key()))),
        ("PS256", rsa_key(), b64url(public_pem(rsa_key()))),
    ],
)
def test_static_public_keys(alg: str, private: Any, key: str) -> None:
    directory = Directory()
    directory.idps.append(
        IdentityProvider(
            aud=None, iss="https://mine/", algs=(alg,), mapping={"sub.$": "$.sub"}, key=key
        )
    )
    token = sign({"iss": "https://mine/", "sub": "me", "exp": int(NOW) + 60}, private, alg)
    response = directory.exchange(form(token))
    assert directory.principal(response["access_token"]).auth_context == {"sub": "me", "app": "web"}


def test_the_most_specific_idp_wins() -> None:
    directory = Directory()
    other_secret = b"another secret, for the aud-only provider"
    directory.idps.insert(
        0,
        IdentityProvider(
            aud="authenticated", iss=None, algs=("HS256",), mapping={}, key=b64url(other_secret)
        ),
    )
    response = directory.exchange(form(sign(supabase_claims(), HS_SECRET, "HS256")))
    assert directory.principal(response["access_token"]).auth_context["sub"] == "user-1"
    only_aud = sign(supabase_claims(iss="https://elsewhere/"), other_secret, "HS256")
    response = directory.exchange(form(only_aud))
    assert directory.principal(response["access_token"]).auth_context == {"app": "web"}


def test_requested_token_type_may_be_left_out() -> None:
    token = sign(supabase_claims(), HS_SECRET, "HS256")
    assert Directory().exchange(form(token, requested_token_type=None))["token_type"] == "Bearer"


GOOD = sign(supabase_claims(), HS_SECRET, "HS256")


@pytest.mark.parametrize(
    ("fields", "code", "reason"),
    [
        (form(GOOD, grant_type=None), "invalid_request", "missing-grant-type"),
        (form(GOOD, grant_type="client_credentials"), "unsupported_grant_type", "grant-type"),
        (
            form(GOOD, requested_token_type="urn:x:refresh"),
            "invalid_request",
            "requested-token-type",
        ),
        (form(GOOD, subject_token_type="urn:x:saml"), "invalid_request", "subject-token-type"),
        (form(GOOD, actor_token="x"), "invalid_request", "actor-token"),
        (form(GOOD, subject_token=None), "invalid_request", "missing-subject-token"),
        (form(GOOD, audience=None), "invalid_request", "missing-audience"),
        (
            form(GOOD, audience=f"https://api.statebacked.dev/{ORG}/web"),
            "invalid_target",
            "bad-audience",
        ),
        (
            form(GOOD, audience=f"https://tokens.statebacked.dev/{ORG}"),
            "invalid_target",
            "bad-audience",
        ),
        (
            form(GOOD, audience=f"https://tokens.statebacked.dev/{ORG}/a/b"),
            "invalid_target",
            "bad-audience",
        ),
        (
            form(GOOD, audience="https://tokens.statebacked.dev/org_nope/web"),
            "invalid_target",
            "unknown-org",
        ),
        (form(GOOD, service="mobile"), "invalid_target", "unknown-service"),
        (form("not.a.jwt"), "invalid_request", "malformed-token"),
    ],
)
def test_bad_requests(fields: dict[str, str], code: str, reason: str) -> None:
    error = refusal(Directory(), fields)
    assert (error.code, error.reason, error.status) == (code, reason, 400)
    assert error.body() == {"error": code, "error_description": error.message}


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (sign(supabase_claims(iss="https://stranger/"), HS_SECRET, "HS256"), "unknown-idp"),
        (sign(supabase_claims(aud=None, iss=None), HS_SECRET, "HS256"), "unknown-idp"),
        (sign(supabase_claims(), HS_SECRET, "HS384"), "unsupported-alg"),
        (compact({"alg": "none"}, supabase_claims()), "unsupported-alg"),
        (sign(supabase_claims(), b"someone else's secret, also long", "HS256"), "bad-signature"),
        (sign(supabase_claims(exp=int(NOW) - 60), HS_SECRET, "HS256"), "token-expired"),
        (sign(supabase_claims(exp=None), HS_SECRET, "HS256"), "missing-exp"),
        (sign(supabase_claims(nbf=int(NOW) + 600), HS_SECRET, "HS256"), "token-not-yet-valid"),
        (sign(auth0_claims(), rsa_key("k1"), "RS256", kid="unknown"), "unknown-kid"),
        (sign(auth0_claims(), rsa_key("intruder"), "RS256", kid="k1"), "bad-signature"),
        (sign(auth0_claims(), rsa_key("k1"), "RS512", kid="k1"), "unsupported-alg"),
    ],
)
def test_bad_subject_tokens(token: str, reason: str) -> None:
    error = refusal(Directory(), form(token))
    assert (error.code, error.reason, error.status) == ("invalid_request", reason, 400)


def test_a_public_key_is_never_an_hmac_secret() -> None:
    # The classic confusion attack: HS256-sign with the IdP's public key as the secret.
    directory = Directory()
    pem = public_pem(rsa_key("k1"))
    forged = hs256_by_hand({"alg": "HS256", "kid": "k1"}, auth0_claims(), pem)
    assert refusal(directory, form(forged)).reason == "unsupported-alg"


def test_a_vanished_provider_key() -> None:
    directory = Directory()
    directory.keys.clear()
    error = refusal(directory, form(GOOD))
    assert (error.code, error.reason) == ("invalid_target", "unknown-key")


def test_a_provider_key_of_another_org() -> None:
    directory = Directory()
    stranger = new_key("org_other", "x", SCOPE_PRESETS["production"], created_at=0)
    directory.keys[stranger.id] = stranger
    directory.providers["web"] = TokenProvider("web", stranger.id, {})
    assert refusal(directory, form(GOOD)).reason == "unknown-key"


def test_an_unreachable_jwks_is_temporarily_unavailable() -> None:
    directory = Directory()

    def down(url: str) -> Mapping[str, Any]:
        raise OSError("timed out")

    directory.jwks = JwksCache(down)
    error = refusal(directory, form(sign(auth0_claims(), rsa_key("k1"), "RS256", kid="k1")))
    assert (error.code, error.reason, error.status) == (
        "temporarily_unavailable",
        "jwks-unavailable",
        503,
    )
