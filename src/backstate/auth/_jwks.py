"""IdPs' JWKS documents, cached by URL; fetching them is the caller's (I/O stays out).

A document is fetched on first use and again once ``ttl_s`` has passed since the last
attempt. A kid the cached document lacks (the IdP rotated its keys) refetches at once,
but at most once per ``min_refetch_s`` per URL, so tokens with made-up kids cannot make
us hammer the IdP. While the IdP is unreachable, the last good document keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jwt import PyJWK
from jwt.exceptions import InvalidKeyError, PyJWKError

from ._errors import AuthError
from ._jws import key_fits

Fetch = Callable[[str], Mapping[str, Any]]

logger = logging.getLogger("backstate.auth")

_KEY_TYPES = {"HS": "oct", "RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


@dataclass(frozen=True, slots=True)
class _Document:
    checked_at: float
    keys: list[dict[str, Any]]


class JwksCache:
    def __init__(self, fetch: Fetch, *, ttl_s: float = 600.0, min_refetch_s: float = 30.0) -> None:
        """``fetch(url)`` returns the parsed JSON document, raising on any failure."""
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._min_refetch_s = min_refetch_s
        self._documents: dict[str, _Document] = {}

    def key(self, url: str, kid: str | None, alg: str, now: float) -> Any:
        """The public key (HMAC bytes for an ``oct`` JWK) that verifies ``kid`` with ``alg``."""
        document = self._documents.get(url)
        if document is None or now - document.checked_at >= self._ttl_s:
            document = self._refresh(url, now, document)
        jwk = _select(document.keys, kid, alg)
        if jwk is None and now - document.checked_at >= self._min_refetch_s:
            document = self._refresh(url, now, document)
            jwk = _select(document.keys, kid, alg)
        if jwk is None:
            raise AuthError("unknown-kid", 401, f"{url} has no {alg} key {kid!r}")
        try:
            key = PyJWK(jwk, algorithm=alg).key
        except (PyJWKError, InvalidKeyError, ValueError, TypeError) as error:
            raise AuthError("invalid-key", 401, f"{url} key {kid!r}: {error}") from None
        if not key_fits(alg, key):
            raise AuthError("invalid-key", 401, f"{url} key {kid!r} cannot verify {alg}")
        return key

    def _refresh(self, url: str, now: float, stale: _Document | None) -> _Document:
        try:
            keys = _keys_of(self._fetch(url))
        except Exception as error:  # whatever the caller's fetch raises: network, JSON, ...
            # The URL is the IdP's, but anyone may ask for an exchange: one message for
            # every failure, or it would tell closed ports, other services and refused
            # addresses apart. The operator finds the reason in the server's log.
            logger.warning("cannot fetch the JWKS at %s: %s", url, error)
            if stale is None:
                raise AuthError(
                    "jwks-unavailable", 503, "the identity provider's keys are unavailable"
                ) from None
            keys = stale.keys
        document = _Document(now, keys)
        self._documents[url] = document
        return document


def _keys_of(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise ValueError("a JWKS document has a keys list")
    return [key for key in keys if isinstance(key, dict)]


def _select(keys: list[dict[str, Any]], kid: str | None, alg: str) -> dict[str, Any] | None:
    usable = [
        key
        for key in keys
        if key.get("kty") == _KEY_TYPES[alg[:2]]
        and key.get("use", "sig") == "sig"
        and key.get("alg", alg) == alg
    ]
    if kid is None:
        return usable[0] if len(usable) == 1 else None
    return next((key for key in usable if key.get("kid") == kid), None)
