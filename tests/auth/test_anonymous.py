"""Anonymous sessions, with the subject token built exactly as @statebacked/client does."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from backstate.auth import (
    ANONYMOUS_SERVICE,
    SCOPE_PRESETS,
    AuthError,
    JwksCache,
    Key,
    TokenExchangeError,
    anonymous_idp,
    anonymous_issuer,
    anonymous_provider,
    exchange,
    new_key,
    new_org_id,
    verify_request_token,
)

from .idp import hs256_by_hand

NOW = 1_800_000_000
ORG = "org_uHvZHpF4STWvMg8BKVCUTg"


def client_token(
    org_id: str, sid: str, did: str | None = None, iat: int = NOW, **extra: Any
) -> str:
    """anonymous-token-config.ts: header {alg, typ}, claims {aud, iss, iat, exp, sid, did},
    HMAC-SHA256 keyed by the org id's UTF-8 bytes."""
    scope = f"https://{org_id}.anonymous.auth.statebacked.dev"
    claims = {
        "aud": scope,
        "iss": scope,
        "iat": iat,
        "exp": iat + 86400,
        "sid": sid,
        "did": did or sid,
    }
    return hs256_by_hand(
        {"alg": "HS256", "typ": "JWT"}, {**claims, **extra}, org_id.encode("utf-8")
    )


class Org:
    def __init__(self, org_id: str = ORG) -> None:
        self.id = org_id
        self.key = new_key(org_id, "anonymous", SCOPE_PRESETS["production"], created_at=0)
        self.idp = anonymous_idp(org_id)
        self.provider = anonymous_provider(self.key.id)


ORGS = {org.id: org for org in (Org(), Org(new_org_id()))}
KEYS: dict[str, Key] = {org.key.id: org.key for org in ORGS.values()}


def exchange_at(org_id: str, subject_token: str, now: float = NOW) -> str:
    response = exchange(
        {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "audience": f"https://tokens.statebacked.dev/{org_id}/{ANONYMOUS_SERVICE}",
            "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "subject_token": subject_token,
        },
        org_lookup=ORGS.__contains__,
        idp_lookup=lambda org_id: [ORGS[org_id].idp],
        provider_lookup=lambda org_id, service: (
            ORGS[org_id].provider if service == ANONYMOUS_SERVICE else None
        ),
        key_lookup=KEYS.get,
        jwks=JwksCache(lambda url: {"keys": []}),
        now=now,
    )
    return response["access_token"]


def test_the_builders() -> None:
    idp = anonymous_idp(ORG)
    assert (
        idp.aud
        == idp.iss
        == anonymous_issuer(ORG)
        == f"https://{ORG}.anonymous.auth.statebacked.dev"
    )
    assert idp.algs == ("HS256",)
    assert idp.key is not None
    assert base64.urlsafe_b64decode(idp.key + "==") == ORG.encode()
    provider = anonymous_provider("sbk_k")
    assert (provider.service, provider.key_id) == ("anonymous-statebacked-dev", "sbk_k")


def test_an_anonymous_session_end_to_end() -> None:
    sid = str(uuid.uuid4())
    access_token = exchange_at(ORG, client_token(ORG, sid, did="device-1"))
    principal = verify_request_token(access_token, KEYS.get, now=NOW)
    assert principal.org_id == ORG
    assert principal.scopes == frozenset(SCOPE_PRESETS["production"])
    assert principal.auth_context == {"sid": sid, "did": "device-1", "auth": "anonymous"}


def test_the_device_id_defaults_to_the_session_id() -> None:
    principal = verify_request_token(exchange_at(ORG, client_token(ORG, "s-1")), KEYS.get, now=NOW)
    assert principal.auth_context == {"sid": "s-1", "did": "s-1", "auth": "anonymous"}


def test_anonymous_tokens_cannot_smuggle_claims() -> None:
    token = client_token(ORG, "s-1", sub="admin", auth="password", act={"sub": "admin"})
    principal = verify_request_token(exchange_at(ORG, token), KEYS.get, now=NOW)
    assert principal.auth_context == {"sid": "s-1", "did": "s-1", "auth": "anonymous"}


def test_one_org_anonymous_token_is_worthless_at_another() -> None:
    other = next(org_id for org_id in ORGS if org_id != ORG)
    with pytest.raises(TokenExchangeError) as caught:
        exchange_at(other, client_token(ORG, "s-1"))
    assert caught.value.reason == "unknown-idp"


def test_a_token_keyed_by_another_org_id_fails() -> None:
    other = next(org_id for org_id in ORGS if org_id != ORG)
    scope = anonymous_issuer(ORG)
    forged = hs256_by_hand(
        {"alg": "HS256", "typ": "JWT"},
        {"aud": scope, "iss": scope, "iat": NOW, "exp": NOW + 86400, "sid": "s", "did": "s"},
        other.encode(),
    )
    with pytest.raises(TokenExchangeError) as caught:
        exchange_at(ORG, forged)
    assert caught.value.reason == "bad-signature"


def test_the_session_token_lasts_a_day_and_each_exchange_an_hour() -> None:
    token = client_token(ORG, "s-1")
    access_token = exchange_at(ORG, token, now=NOW + 86000)
    verify_request_token(access_token, KEYS.get, now=NOW + 86399)
    with pytest.raises(AuthError, match="token-expired"):
        verify_request_token(access_token, KEYS.get, now=NOW + 86410)
    with pytest.raises(TokenExchangeError) as caught:
        exchange_at(ORG, token, now=NOW + 86400 + 10)
    assert caught.value.reason == "token-expired"
