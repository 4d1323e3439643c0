"""Identity providers (whose tokens we accept) and token providers (what we issue).

Wire shapes (``POST /idps``, ``POST /token-providers``):
- IdP ``{aud?, iss?, algs[], key? | jwksUrl?, mapping}``: at least one of aud and iss;
  exactly one of ``key`` (base64url bytes: the shared secret for HS*, a PEM public key,
  certificate or JWK for the others) and ``jwksUrl``. ``GET /idps`` never shows ``key``.
- Token provider ``{service, keyId, mapping}``.

A static key serves either HS* or public-key algorithms, never both, so that a public
key can never be used as an HMAC secret (algorithm confusion).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import AuthError
from ._jws import IDP_ALGORITHMS, key_fits, verification_key
from ._mapping import validate_mapping

SERVICE_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")


def b64url_decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _field(body: Mapping[str, Any], name: str) -> Any:
    """A body field as it came; ``__post_init__`` checks its type."""
    return body.get(name)


def _idp_error(message: str, parameter: str) -> AuthError:
    return AuthError("invalid-idp", 400, message, parameter)


def _mapping_for(owner: str, mapping: Any) -> None:
    try:
        validate_mapping(mapping)
    except AuthError as error:
        raise AuthError(owner, 400, error.message, "mapping") from None


@dataclass(frozen=True, slots=True)
class IdentityProvider:
    aud: str | None
    iss: str | None
    algs: tuple[str, ...]
    mapping: dict[str, Any]
    key: str | None = field(default=None, repr=False)
    jwks_url: str | None = None

    def __post_init__(self) -> None:
        if not self.aud and not self.iss:
            raise _idp_error("give aud, iss or both", "aud")
        if not self.algs or any(alg not in IDP_ALGORITHMS for alg in self.algs):
            raise _idp_error(
                f"algs must be a non-empty subset of {', '.join(IDP_ALGORITHMS)}", "algs"
            )
        if (self.key is None) == (self.jwks_url is None):
            raise _idp_error("give exactly one of key and jwksUrl", "key")
        if self.jwks_url is not None and not self.jwks_url.startswith(("https://", "http://")):
            raise _idp_error("jwksUrl must be an http(s) URL", "jwksUrl")
        if self.key is not None:
            if len({alg.startswith("HS") for alg in self.algs}) > 1:
                raise _idp_error("a static key serves HS* or public-key algs, not both", "algs")
            for alg in self.algs:
                self.static_key(alg)
        _mapping_for("invalid-idp", self.mapping)

    def static_key(self, alg: str) -> Any:
        """The configured key, ready to verify ``alg``."""
        assert self.key is not None
        try:
            material = b64url_decode(self.key)
        except (binascii.Error, ValueError):
            raise _idp_error("key is not base64url", "key") from None
        if not material:
            raise _idp_error("key is empty", "key")
        try:
            key = verification_key(material, alg)
        except AuthError as error:
            raise _idp_error(error.message, "key") from None
        if not key_fits(alg, key):
            raise _idp_error(f"key cannot verify {alg}", "key")
        return key

    def matches(self, token_audiences: list[str], token_issuer: Any) -> bool:
        return (self.aud is None or self.aud in token_audiences) and (
            self.iss is None or self.iss == token_issuer
        )

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> IdentityProvider:
        algs = body.get("algs")
        if not isinstance(algs, list) or not all(isinstance(alg, str) for alg in algs):
            raise _idp_error("algs must be a list of strings", "algs")
        for name in ("aud", "iss", "key", "jwksUrl"):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise _idp_error(f"{name} must be a string", name)
        return cls(
            aud=body.get("aud"),
            iss=body.get("iss"),
            algs=tuple(algs),
            mapping=_field(body, "mapping"),
            key=body.get("key"),
            jwks_url=body.get("jwksUrl"),
        )

    def to_json(self) -> dict[str, Any]:
        """The ``GET /idps`` item: the key stays secret."""
        item: dict[str, Any] = {}
        if self.iss is not None:
            item["iss"] = self.iss
        if self.aud is not None:
            item["aud"] = self.aud
        item["algs"] = list(self.algs)
        if self.jwks_url is not None:
            item["jwksUrl"] = self.jwks_url
        item["mapping"] = self.mapping
        return item


@dataclass(frozen=True, slots=True)
class TokenProvider:
    service: str
    key_id: str
    mapping: dict[str, Any]

    def __post_init__(self) -> None:
        if not isinstance(self.service, str) or not SERVICE_NAME.fullmatch(self.service):
            raise AuthError(
                "invalid-token-provider", 400, "service must match [a-zA-Z0-9_-]{1,128}", "service"
            )
        if not isinstance(self.key_id, str) or not self.key_id:
            raise AuthError("invalid-token-provider", 400, "keyId must be a key id", "keyId")
        _mapping_for("invalid-token-provider", self.mapping)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> TokenProvider:
        return cls(
            service=_field(body, "service"),
            key_id=_field(body, "keyId"),
            mapping=_field(body, "mapping"),
        )

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "keyId": self.key_id, "mapping": self.mapping}
