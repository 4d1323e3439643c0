"""Where the client's request tokens come from, and when it fetches a new one.

A client authenticates with one of:

- a token (``str``), or a function returning one (called again when it nears expiry);
- ``KeyAuth``: an org key's id and secret, signing its own tokens with ``act`` claims
  (``backstate.auth.sign_token``, the tokens ``@statebacked/token`` makes);
- ``ExchangeAuth``: an identity provider's token, exchanged at ``POST /tokens``;
- ``AnonymousAuth``: an anonymous session, exactly as ``@statebacked/client`` makes it.

Unlike State Backed's client, which fetches a new token only after ``exp`` has passed,
``TokenCache`` replaces a token *before* it expires: when the last 20% of its lifetime
begins, or 30 s before ``exp`` if that comes earlier, but never before half its lifetime
has passed (a 1 h token is replaced after 48 min, a 60 s one after 30 s, a 10 s one
after 5 s). A token without ``exp`` is kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backstate.auth import ANONYMOUS_SERVICE, anonymous_issuer, sign_token

from ._api import exchange_token
from ._calls import Flow
from ._errors import ApiError, ServerError, Unauthorized, Unreachable

DEFAULT_API_HOST = "http://127.0.0.1:8780"  # where `backstate serve` listens by default
KEY_TOKEN_LIFETIME_S = 3600
ANONYMOUS_TOKEN_LIFETIME_S = 86400  # @statebacked/client's
REFRESH_FRACTION = 0.8
REFRESH_MARGIN_S = 30.0


@dataclass(frozen=True)
class KeyAuth:
    """Sign request tokens with an org key. ``claims`` become the token's ``act``
    claims: the auth context the machine's authorizers see."""

    key_id: str
    secret: str = field(repr=False)
    claims: Mapping[str, Any] = field(default_factory=dict)
    expires_in_s: int = KEY_TOKEN_LIFETIME_S

    def sign(self, now: float) -> str:
        return sign_token(
            self.key_id, self.secret, self.claims, expires_in_s=self.expires_in_s, now=now
        )


@dataclass(frozen=True)
class ExchangeAuth:
    """Exchange an identity provider's token (Auth0, Supabase, your own, ...) for a
    backstate token through the org's token provider ``service``. The token may be a
    function returning it (for ``AsyncClient``, also an async one), called for each
    exchange."""

    identity_provider_token: str | Callable[[], str] | Callable[[], Awaitable[str]] = field(
        repr=False
    )
    org_id: str
    service: str


_process_session = str(uuid.uuid4())


@dataclass(frozen=True)
class AnonymousAuth:
    """An anonymous session: the auth context becomes ``{sid, did, auth: "anonymous"}``.
    ``session_id`` defaults to one random id per process, ``device_id`` to the session."""

    org_id: str
    session_id: str | None = None
    device_id: str | None = None

    def subject_token(self, now: float) -> str:
        """What ``anonymous-token-config.ts`` signs: header ``{alg, typ}`` and claims
        ``{aud, iss, iat, exp, sid, did}`` as ``JSON.stringify`` writes them, HMAC-SHA256
        keyed by the org id's UTF-8 bytes (shorter than PyJWT accepts, hence by hand)."""
        sid = self.session_id or _process_session
        issuer = anonymous_issuer(self.org_id)
        iat = math.floor(now)
        claims = {
            "aud": issuer,
            "iss": issuer,
            "iat": iat,
            "exp": iat + ANONYMOUS_TOKEN_LIFETIME_S,
            "sid": sid,
            "did": self.device_id or sid,
        }
        signing_input = f"{_b64_json({'alg': 'HS256', 'typ': 'JWT'})}.{_b64_json(claims)}"
        signature = hmac.new(
            self.org_id.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256
        ).digest()
        return f"{signing_input}.{_b64(signature)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64_json(value: Mapping[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


Auth = (
    str | Callable[[], str] | Callable[[], Awaitable[str]] | KeyAuth | ExchangeAuth | AnonymousAuth
)


def supplier(auth: Auth) -> Callable[[], object] | None:
    """The caller's function to call before ``token_flow``, if the auth has one."""
    if isinstance(auth, ExchangeAuth):
        source = auth.identity_provider_token
        return None if isinstance(source, str) else source
    if isinstance(auth, str | KeyAuth | AnonymousAuth):
        return None
    return auth


def token_flow(auth: Auth, supplied: object, now: float) -> Flow[str]:
    """A new token; ``supplied`` is what ``supplier(auth)`` returned (awaited)."""
    if isinstance(auth, str):
        return auth
    if isinstance(auth, KeyAuth):
        return auth.sign(now)
    if isinstance(auth, AnonymousAuth):
        subject = auth.subject_token(now)
        return (yield from exchange_token(auth.org_id, ANONYMOUS_SERVICE, subject))
    if isinstance(auth, ExchangeAuth):
        source = auth.identity_provider_token
        subject = source if isinstance(source, str) else _token_text(supplied)
        return (yield from exchange_token(auth.org_id, auth.service, subject))
    return _token_text(supplied)


def _token_text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"the token function returned {type(value).__name__}, not a token")
    return value


def token_error(error: Exception) -> ApiError:
    """Why no token could be had. The server being down or failing stays what it is
    (worth retrying); anything else is ``Unauthorized`` (``token-unavailable``)."""
    if isinstance(error, Unreachable | ServerError):
        return error
    code = error.code if isinstance(error, ApiError) else "token-unavailable"
    return Unauthorized(f"could not get a token: {error}", code=code)


def refresh_time(token: str, now: float) -> float:
    """When to stop using ``token`` (epoch seconds); ``inf`` if it has no ``exp``."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = float(claims["exp"])
    except (IndexError, KeyError, TypeError, ValueError):
        return math.inf
    iat = claims.get("iat")
    issued = float(iat) if isinstance(iat, int | float) and iat <= exp else min(now, exp)
    lifetime = exp - issued
    margin = min(max(lifetime * (1 - REFRESH_FRACTION), REFRESH_MARGIN_S), lifetime / 2)
    return exp - margin


class TokenCache:
    """The current token and when to replace it. ``obtained`` counts the tokens the
    client has fetched or signed."""

    def __init__(self) -> None:
        self.token: str | None = None
        self.refresh_at = 0.0
        self.obtained = 0

    def current(self, now: float) -> str | None:
        return self.token if self.token is not None and now < self.refresh_at else None

    def store(self, token: str, now: float) -> str:
        self.token = token
        self.refresh_at = refresh_time(token, now)
        self.obtained += 1
        return token


# -- the credentials file `backstate serve` writes ------------------------------------------


@dataclass(frozen=True)
class Credentials:
    api_host: str
    org_id: str
    key_id: str
    secret: str = field(repr=False)


def default_credentials_path() -> Path:
    """``$BACKSTATE_HOME/credentials.json``, else ``~/.backstate/credentials.json``."""
    home = os.environ.get("BACKSTATE_HOME")
    return (Path(home) if home else Path.home() / ".backstate") / "credentials.json"


def load_credentials(path: str | os.PathLike[str] | None = None) -> Credentials:
    """The ``{apiHost, orgId, keyId, secret}`` that ``backstate serve`` writes on its
    first start."""
    data = json.loads(Path(path or default_credentials_path()).read_text(encoding="utf-8"))
    return Credentials(
        api_host=data.get("apiHost") or DEFAULT_API_HOST,
        org_id=data["orgId"],
        key_id=data["keyId"],
        secret=data["secret"],
    )
