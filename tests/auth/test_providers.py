"""IdP and token provider configurations: validation and their wire shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backstate.auth import AuthError, IdentityProvider, TokenProvider

from .idp import b64url, ec_key, ed25519_key, public_jwk, public_pem, rsa_key

MAPPING = {"sub.$": "$.sub"}
SECRET = b64url(b"a shared secret of the identity provider")


def idp(**fields: Any) -> IdentityProvider:
    base: dict[str, Any] = {"aud": "app", "iss": None, "algs": ("HS256",), "mapping": MAPPING}
    if "jwks_url" not in fields:
        base["key"] = SECRET
    return IdentityProvider(**{**base, **fields})


def refusal(**fields: Any) -> AuthError:
    with pytest.raises(AuthError) as caught:
        idp(**fields)
    assert (caught.value.code, caught.value.status) == ("invalid-idp", 400)
    return caught.value


@pytest.mark.parametrize(
    ("algs", "key"),
    [
        (("HS256", "HS384", "HS512"), SECRET),
        (("RS256", "PS512"), b64url(public_pem(rsa_key()))),
        (("ES256",), b64url(public_pem(ec_key()))),
        (("ES384",), b64url(json.dumps(public_jwk(ec_key("P-384"))).encode())),
        (("EdDSA",), b64url(public_pem(ed25519_key()))),
    ],
)
def test_static_keys_for_each_family(algs: tuple[str, ...], key: str) -> None:
    provider = idp(algs=algs, key=key)
    for alg in algs:
        assert provider.static_key(alg) is not None


def test_a_jwks_idp() -> None:
    provider = idp(jwks_url="https://idp.example/.well-known/jwks.json", algs=("RS256",))
    assert provider.key is None


def test_aud_or_iss_is_required() -> None:
    assert refusal(aud=None, iss=None).parameter == "aud"
    assert idp(aud=None, iss="https://issuer/").iss == "https://issuer/"


@pytest.mark.parametrize("algs", [(), ("HS256", "none"), ("RS1",)])
def test_algs_must_be_known(algs: tuple[str, ...]) -> None:
    assert refusal(algs=algs).parameter == "algs"


def test_exactly_one_key_source() -> None:
    assert refusal(key=None).parameter == "key"
    assert refusal(jwks_url="https://idp/jwks", key=SECRET).parameter == "key"
    assert refusal(jwks_url="ftp://idp/jwks").parameter == "jwksUrl"


@pytest.mark.parametrize("key", ["not base64!", "", b64url(b"not a pem")])
def test_keys_must_decode(key: str) -> None:
    algs = ("HS256",) if key != b64url(b"not a pem") else ("RS256",)
    assert refusal(key=key, algs=algs).parameter == "key"


def test_a_static_key_cannot_serve_hmac_and_public_key_algs() -> None:
    # Otherwise the public PEM would double as an HMAC secret anyone could sign with.
    error = refusal(algs=("RS256", "HS256"), key=b64url(public_pem(rsa_key())))
    assert error.parameter == "algs"


@pytest.mark.parametrize(
    ("alg", "key"),
    [
        ("ES256", public_pem(rsa_key())),
        ("ES256", public_pem(ec_key("P-384"))),
        ("RS256", public_pem(ed25519_key())),
        ("HS256", public_pem(rsa_key())),
    ],
)
def test_a_static_key_must_fit_its_algs(alg: str, key: bytes) -> None:
    assert refusal(algs=(alg,), key=b64url(key)).parameter == "key"


def test_the_mapping_is_checked() -> None:
    assert refusal(mapping={"sub.$": 3}).parameter == "mapping"


def test_matching_by_aud_and_iss() -> None:
    both = idp(aud="app", iss="https://issuer/")
    assert both.matches(["app"], "https://issuer/")
    assert not both.matches(["app"], "https://other/")
    assert idp(aud="app").matches(["x", "app"], None)
    assert not idp(aud="app").matches([], "https://issuer/")
    assert idp(aud=None, iss="https://issuer/").matches([], "https://issuer/")


def test_idp_wire_shape_hides_the_key() -> None:
    body = {
        "aud": "app",
        "iss": "https://issuer/",
        "algs": ["HS256"],
        "key": SECRET,
        "mapping": MAPPING,
    }
    provider = IdentityProvider.from_json(body)
    assert provider.key == SECRET
    assert provider.to_json() == {
        "iss": "https://issuer/",
        "aud": "app",
        "algs": ["HS256"],
        "mapping": MAPPING,
    }
    assert SECRET not in repr(provider)
    jwks = IdentityProvider.from_json(
        {"iss": "i", "algs": ["RS256"], "jwksUrl": "https://i/j", "mapping": {}}
    )
    assert jwks.to_json() == {
        "iss": "i",
        "algs": ["RS256"],
        "jwksUrl": "https://i/j",
        "mapping": {},
    }


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"aud": "a", "algs": "HS256", "key": SECRET, "mapping": {}}, "algs"),
        ({"aud": 5, "algs": ["HS256"], "key": SECRET, "mapping": {}}, "aud"),
        ({"aud": "a", "algs": ["HS256"], "key": SECRET}, "mapping"),
        ({"aud": "a", "algs": ["RS256"], "jwksUrl": ["u"], "mapping": {}}, "jwksUrl"),
    ],
)
def test_idp_bodies_are_checked(body: dict[str, Any], parameter: str) -> None:
    with pytest.raises(AuthError) as caught:
        IdentityProvider.from_json(body)
    assert (caught.value.code, caught.value.parameter) == ("invalid-idp", parameter)


def test_token_provider_wire_shape() -> None:
    body = {"service": "my-app_1", "keyId": "sbk_x", "mapping": {"sub.$": "$.sub", "app": "web"}}
    provider = TokenProvider.from_json(body)
    assert (provider.service, provider.key_id) == ("my-app_1", "sbk_x")
    assert provider.to_json() == body


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"service": "has space", "keyId": "sbk_x", "mapping": {}}, "service"),
        ({"service": "s" * 129, "keyId": "sbk_x", "mapping": {}}, "service"),
        ({"keyId": "sbk_x", "mapping": {}}, "service"),
        ({"service": "s", "keyId": "", "mapping": {}}, "keyId"),
        ({"service": "s", "keyId": "sbk_x", "mapping": {"a.$": "$["}}, "mapping"),
    ],
)
def test_token_provider_bodies_are_checked(body: dict[str, Any], parameter: str) -> None:
    with pytest.raises(AuthError) as caught:
        TokenProvider.from_json(body)
    assert (caught.value.code, caught.value.status, caught.value.parameter) == (
        "invalid-token-provider",
        400,
        parameter,
    )
