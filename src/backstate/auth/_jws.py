"""JWS through PyJWT: one private ``PyJWS`` that knows exactly the IdP algorithms.

Two departures from PyJWT's defaults, both deliberate:
- HMAC keys shorter than the hash are accepted: the wire format fixes the anonymous
  IdP's key as the org id (26 bytes), and an IdP's shared secret is its owner's choice.
- Any other key below its minimum length (RSA under 2048 bits) is an error, not a warning.

Claims are parsed here rather than by PyJWT so that the time checks read the caller's
clock (``now``, epoch seconds) and every failure maps to one ``AuthError`` code.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt import PyJWK
from jwt.algorithms import HMACAlgorithm, get_default_algorithms
from jwt.api_jws import PyJWS
from jwt.exceptions import (
    InvalidAlgorithmError,
    InvalidKeyError,
    InvalidSignatureError,
    InvalidTokenError,
    PyJWKError,
)

from ._errors import AuthError

IDP_ALGORITHMS = (
    "HS256",
    "HS384",
    "HS512",
    "PS256",
    "PS384",
    "PS512",
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)

# Tokens issued a little early or used a little late still pass: clocks drift, and the
# State Backed client keeps using a token until a second after its exp.
CLOCK_SKEW_S = 5.0

_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}


class _AnyLengthHMAC(HMACAlgorithm):
    def check_key_length(self, key: bytes) -> str | None:
        return None


def _build_jws() -> PyJWS:
    jws = PyJWS(algorithms=[], options={"enforce_minimum_key_length": True})
    defaults = get_default_algorithms()
    hashes = {
        "HS256": HMACAlgorithm.SHA256,
        "HS384": HMACAlgorithm.SHA384,
        "HS512": HMACAlgorithm.SHA512,
    }
    for alg in IDP_ALGORITHMS:
        jws.register_algorithm(alg, _AnyLengthHMAC(hashes[alg]) if alg in hashes else defaults[alg])
    return jws


_JWS = _build_jws()


def js_json(value: Any) -> bytes:
    """JSON as JavaScript's ``JSON.stringify`` prints it (compact, raw UTF-8)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sign_hs256(payload: bytes, secret: bytes, kid: str) -> str:
    """``{"alg":"HS256","kid":…}`` over ``payload``: jose's header, with no ``typ``."""
    return _JWS.encode(payload, secret, "HS256", headers={"kid": kid, "typ": None})


def _malformed(message: str) -> AuthError:
    return AuthError("malformed-token", 401, message)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _claims(payload: bytes) -> dict[str, Any]:
    try:
        claims = json.loads(payload, parse_constant=_reject_constant)
    except ValueError:
        raise _malformed("the token's payload is not JSON") from None
    if not isinstance(claims, dict):
        raise _malformed("the token's payload is not a JSON object")
    return claims


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, signature unchecked: only to choose the key that checks it."""
    try:
        header = _JWS.get_unverified_header(token)
        payload = _JWS.decode_complete(token, options={"verify_signature": False})["payload"]
    except InvalidTokenError as error:
        raise _malformed(f"not a JWS compact token: {error}") from None
    return header, _claims(payload)


def verified_claims(token: str, key: Any, alg: str) -> dict[str, Any]:
    try:
        payload = _JWS.decode_complete(token, key, algorithms=[alg])["payload"]
    except InvalidSignatureError:
        raise AuthError("bad-signature", 401, "the token's signature does not verify") from None
    except (InvalidKeyError, InvalidAlgorithmError) as error:
        raise AuthError("invalid-key", 401, f"the key cannot verify {alg}: {error}") from None
    except InvalidTokenError as error:
        raise _malformed(f"not a JWS compact token: {error}") from None
    return _claims(payload)


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _malformed(f"the {name} claim is not a number")
    return float(value)


def check_times(claims: dict[str, Any], now: float) -> None:
    exp = _number(claims, "exp")
    if exp is None:
        raise AuthError("missing-exp", 401, "the token has no exp claim")
    if now >= exp + CLOCK_SKEW_S:
        raise AuthError("token-expired", 401, "the token has expired")
    for name in ("nbf", "iat"):
        start = _number(claims, name)
        if start is not None and start > now + CLOCK_SKEW_S:
            raise AuthError("token-not-yet-valid", 401, f"the token's {name} is in the future")


def audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if aud is None:
        return []
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list) and all(isinstance(item, str) for item in aud):
        return aud
    raise _malformed("the aud claim is neither a string nor a list of strings")


def verification_key(material: bytes, alg: str) -> Any:
    """The key in ``material`` for ``alg``: raw bytes for HS*, else a JWK or PEM."""
    if alg.startswith("HS"):
        return material
    try:
        if material.lstrip().startswith(b"{"):
            return PyJWK(json.loads(material), algorithm=alg).key
        if b"-----BEGIN CERTIFICATE-----" in material:
            return x509.load_pem_x509_certificate(material).public_key()
        return serialization.load_pem_public_key(material)
    except (ValueError, TypeError, PyJWKError, InvalidKeyError) as error:
        raise AuthError("invalid-key", 401, f"not a public key for {alg}: {error}") from None


def key_fits(alg: str, key: Any) -> bool:
    """Whether ``key`` is the kind ``alg`` verifies with; guards against alg confusion."""
    if alg.startswith("HS"):
        try:  # PyJWT refuses PEM, SSH and DER public keys as HMAC secrets
            _JWS.get_algorithm_by_name(alg).prepare_key(key)
        except (InvalidKeyError, TypeError):
            return False
        return True
    if alg.startswith(("RS", "PS")):
        return isinstance(key, rsa.RSAPublicKey)
    if alg in _CURVES:
        return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == _CURVES[alg]
    return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
