"""The JWKS cache: TTL, refetch on an unknown kid (rotation), and failure handling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from backstate.auth import AuthError, JwksCache

from .idp import b64url, ec_key, ed25519_key, public_jwk, rsa_key

URL = "https://idp.example/.well-known/jwks.json"


class FakeIdp:
    """Serves a JWKS document that tests can rotate or take down."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.down = False

    def fetch(self, url: str) -> Mapping[str, Any]:
        assert url == URL
        self.fetches += 1
        if self.down:
            raise OSError("connection refused")
        return {"keys": list(self.keys)}


def refusal(cache: JwksCache, kid: str | None, alg: str, now: float) -> AuthError:
    with pytest.raises(AuthError) as caught:
        cache.key(URL, kid, alg, now)
    return caught.value


def test_keys_come_from_the_document_and_stay_cached() -> None:
    idp = FakeIdp(public_jwk(rsa_key(), "r1"), public_jwk(ec_key(), "e1"))
    cache = JwksCache(idp.fetch, ttl_s=600)
    assert isinstance(cache.key(URL, "r1", "RS256", now=0), rsa.RSAPublicKey)
    assert isinstance(cache.key(URL, "e1", "ES256", now=10), ec.EllipticCurvePublicKey)
    assert isinstance(cache.key(URL, "r1", "PS384", now=599), rsa.RSAPublicKey)
    assert idp.fetches == 1


def test_the_document_is_refetched_after_its_ttl() -> None:
    idp = FakeIdp(public_jwk(rsa_key(), "r1"))
    cache = JwksCache(idp.fetch, ttl_s=600)
    cache.key(URL, "r1", "RS256", now=0)
    cache.key(URL, "r1", "RS256", now=600)
    assert idp.fetches == 2


def test_an_unknown_kid_refetches_once_for_rotation() -> None:
    idp = FakeIdp(public_jwk(rsa_key("old"), "old"))
    cache = JwksCache(idp.fetch, ttl_s=600, min_refetch_s=30)
    cache.key(URL, "old", "RS256", now=0)
    idp.keys = [public_jwk(rsa_key("new"), "new")]
    assert cache.key(URL, "new", "RS256", now=40) == rsa_key("new").public_key()
    assert idp.fetches == 2
    # The old key is gone from the new document.
    assert refusal(cache, "old", "RS256", now=41).code == "unknown-kid"


def test_unknown_kids_cannot_make_us_hammer_the_idp() -> None:
    idp = FakeIdp(public_jwk(rsa_key(), "r1"))
    cache = JwksCache(idp.fetch, ttl_s=600, min_refetch_s=30)
    cache.key(URL, "r1", "RS256", now=0)
    for now in range(1, 30):
        error = refusal(cache, f"made-up-{now}", "RS256", now=now)
        assert (error.code, error.status) == ("unknown-kid", 401)
    assert idp.fetches == 1
    refusal(cache, "made-up", "RS256", now=30)
    assert idp.fetches == 2


def test_an_unreachable_idp_with_nothing_cached() -> None:
    idp = FakeIdp(public_jwk(rsa_key(), "r1"))
    idp.down = True
    error = refusal(JwksCache(idp.fetch), "r1", "RS256", now=0)
    assert (error.code, error.status) == ("jwks-unavailable", 503)


def test_an_unreachable_idp_keeps_the_last_document_serving() -> None:
    idp = FakeIdp(public_jwk(rsa_key(), "r1"))
    cache = JwksCache(idp.fetch, ttl_s=600)
    cache.key(URL, "r1", "RS256", now=0)
    idp.down = True
    assert cache.key(URL, "r1", "RS256", now=700) == rsa_key().public_key()
    cache.key(URL, "r1", "RS256", now=800)
    assert idp.fetches == 2  # the failed attempt counts as a check


def test_a_document_without_keys_is_unavailable() -> None:
    error = refusal(JwksCache(lambda url: {"nope": []}), "r1", "RS256", now=0)
    assert error.code == "jwks-unavailable"


def test_without_a_kid_a_single_fitting_key_is_used() -> None:
    idp = FakeIdp(public_jwk(rsa_key(), "r1"), public_jwk(ed25519_key(), "d1"))
    cache = JwksCache(idp.fetch)
    assert isinstance(cache.key(URL, None, "EdDSA", now=0), ed25519.Ed25519PublicKey)
    idp.keys.append(public_jwk(rsa_key("b"), "r2"))
    cache = JwksCache(idp.fetch)
    assert refusal(cache, None, "RS256", now=0).code == "unknown-kid"


@pytest.mark.parametrize(
    "jwk",
    [
        public_jwk(rsa_key(), "k", use="enc"),
        public_jwk(rsa_key(), "k", alg="RS512"),
        public_jwk(ec_key(), "k"),
    ],
)
def test_keys_for_other_uses_or_algs_are_skipped(jwk: dict[str, Any]) -> None:
    assert refusal(JwksCache(FakeIdp(jwk).fetch), "k", "RS256", now=0).code == "unknown-kid"


def test_an_ec_key_on_the_wrong_curve_is_refused() -> None:
    cache = JwksCache(FakeIdp(public_jwk(ec_key("P-384"), "k")).fetch)
    assert refusal(cache, "k", "ES256", now=0).code == "invalid-key"


def test_a_broken_jwk_is_refused() -> None:
    cache = JwksCache(FakeIdp({"kty": "RSA", "kid": "k", "n": "AQAB"}).fetch)
    assert refusal(cache, "k", "RS256", now=0).code == "invalid-key"


def test_an_oct_key_serves_hmac() -> None:
    secret = b"a shared secret of thirty-two bytes or more"
    cache = JwksCache(FakeIdp({"kty": "oct", "kid": "h", "k": b64url(secret)}).fetch)
    assert cache.key(URL, "h", "HS256", now=0) == secret
