"""Request tokens: what ``@statebacked/token``'s ``signToken`` makes, and their check.

A request token is HS256 over the UTF-8 bytes of an org key's secret, ``kid`` = key id,
``aud`` = ``https://api.statebacked.dev/``, and the end-user claims in ``act``. Tokens
that token exchange issues are the same, signed by the token provider's key.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from ._errors import AuthError
from ._jws import audiences, check_times, js_json, sign_hs256, unverified, verified_claims
from ._keys import Key
from ._principal import Principal

API_AUDIENCE = "https://api.statebacked.dev/"


def default_issuer(key_id: str) -> str:
    return f"https://{key_id}.client.statebacked.dev/"


def sign_token(
    key_id: str,
    secret: str,
    claims: Mapping[str, Any],
    *,
    expires_in_s: int | None = None,
    expires_at: int | float | datetime | None = None,
    issuer: str | None = None,
    now: float | None = None,
) -> str:
    """The token ``signToken({stateBackedKeyId, stateBackedSecretKey}, claims, …)`` makes.

    Give exactly one of ``expires_in_s`` and ``expires_at`` (epoch seconds or a datetime).
    The bytes match jose's: header ``{"alg":"HS256","kid":…}``, then
    ``{"act":…,"aud":…,"exp":…,"iss":…,"iat":…}`` in that order.
    """
    if (expires_in_s is None) == (expires_at is None):
        raise ValueError("give exactly one of expires_in_s and expires_at")
    iat = math.floor(time.time() if now is None else now)
    if isinstance(expires_at, datetime):
        exp: int | float = math.floor(expires_at.timestamp())
    elif expires_at is not None:
        exp = expires_at
    else:
        assert expires_in_s is not None
        exp = iat + expires_in_s
    payload = {
        "act": dict(claims),
        "aud": API_AUDIENCE,
        "exp": exp,
        "iss": issuer or default_issuer(key_id),
        "iat": iat,
    }
    return sign_hs256(js_json(payload), secret.encode("utf-8"), key_id)


def verify_request_token(
    token: str | None,
    lookup_key: Callable[[str], Key | None],
    *,
    now: float | None = None,
) -> Principal:
    """The principal a bearer token speaks for, or ``AuthError`` (401) saying why not."""
    if not token:
        raise AuthError("missing-token", 401, "no bearer token")
    header, _ = unverified(token)
    alg = header.get("alg")
    if alg != "HS256":
        raise AuthError("unsupported-alg", 401, f"key tokens are HS256, not {alg!r}")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise AuthError("malformed-token", 401, "the token has no kid")
    key = lookup_key(kid)
    if key is None:
        raise AuthError("unknown-key", 401, f"no key {kid}")
    claims = verified_claims(token, key.secret.encode("utf-8"), "HS256")
    if API_AUDIENCE not in audiences(claims):
        raise AuthError("wrong-audience", 401, f"the token's aud is not {API_AUDIENCE}")
    check_times(claims, time.time() if now is None else now)
    return Principal(key.org_id, key.id, frozenset(key.scopes), auth_context(claims))


def auth_context(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The ``act`` claim, with the top-level ``sub`` when ``act`` has none."""
    act = claims.get("act", {})
    if not isinstance(act, dict):
        raise AuthError("malformed-token", 401, "the act claim is not an object")
    context = dict(act)
    if "sub" not in context and "sub" in claims:
        context["sub"] = claims["sub"]
    return context
