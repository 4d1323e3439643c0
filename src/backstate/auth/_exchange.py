"""Token exchange (RFC 8693), ``POST /tokens``: an IdP's token in, a request token out.

1. The form has ``grant_type`` = token exchange, ``audience`` =
   ``https://tokens.statebacked.dev/{orgId}/{service}``, ``subject_token``, and
   optionally ``requested_token_type`` (only the access-token type).
2. The IdP is the org's one that the subject token's ``aud``/``iss`` name, read before
   verifying; one that names both beats one that names either.
3. The token must verify with one of the IdP's algs and its key or JWKS, and carry exp.
4. Its claims go through the IdP mapping, then the token provider's, giving ``act``.
5. The provider's key signs the result; it expires with the subject token, and within
   an hour at most, when the client exchanges again.

Errors follow RFC 6749 section 5.2. RFC 8693 section 2.2.2 makes an invalid or
unacceptable subject token ``invalid_request``; a target we cannot issue for (no such
org or service, or the provider's key is gone) is ``invalid_target``. The finer
``reason`` says which check failed. This is synchronous because ``JwksCache`` calls the
caller's fetch function; an async server runs it in a worker thread.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._errors import AuthError, TokenExchangeError
from ._jwks import JwksCache
from ._jws import audiences, check_times, unverified, verified_claims
from ._keys import Key
from ._mapping import apply_mapping
from ._providers import SERVICE_NAME, IdentityProvider, TokenProvider
from ._tokens import sign_token

TOKEN_EXCHANGE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_AUDIENCE_PREFIX = "https://tokens.statebacked.dev/"
MAX_ISSUED_LIFETIME_S = 3600

_SUBJECT_TOKEN_TYPES = {
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
    ACCESS_TOKEN_TYPE,
}


def _request_error(message: str, reason: str) -> TokenExchangeError:
    return TokenExchangeError("invalid_request", message, reason)


def _target_error(message: str, reason: str) -> TokenExchangeError:
    return TokenExchangeError("invalid_target", message, reason)


def exchange(
    form: Mapping[str, str],
    *,
    org_lookup: Callable[[str], bool],
    idp_lookup: Callable[[str], Iterable[IdentityProvider]],
    provider_lookup: Callable[[str, str], TokenProvider | None],
    key_lookup: Callable[[str], Key | None],
    jwks: JwksCache,
    now: float,
) -> dict[str, str]:
    """The token response for a ``POST /tokens`` form, or ``TokenExchangeError``.

    ``org_lookup(org_id)`` says whether the org exists, ``idp_lookup(org_id)`` lists its
    IdPs, ``provider_lookup(org_id, service)`` finds a token provider, ``key_lookup(kid)``
    a key; ``now`` is epoch seconds.
    """
    grant_type = form.get("grant_type")
    if not grant_type:
        raise _request_error("grant_type is required", "missing-grant-type")
    if grant_type != TOKEN_EXCHANGE_GRANT_TYPE:
        raise TokenExchangeError(
            "unsupported_grant_type",
            f"grant_type must be {TOKEN_EXCHANGE_GRANT_TYPE}",
            "grant-type",
        )
    if form.get("requested_token_type", ACCESS_TOKEN_TYPE) != ACCESS_TOKEN_TYPE:
        raise _request_error(
            f"requested_token_type must be {ACCESS_TOKEN_TYPE}", "requested-token-type"
        )
    subject_token_type = form.get("subject_token_type")
    if subject_token_type is not None and subject_token_type not in _SUBJECT_TOKEN_TYPES:
        raise _request_error("subject_token_type must name a JWT", "subject-token-type")
    if "actor_token" in form:
        raise _request_error("delegation (actor_token) is not supported", "actor-token")
    subject_token = form.get("subject_token")
    if not subject_token:
        raise _request_error("subject_token is required", "missing-subject-token")
    org_id, service = _target(form.get("audience"))
    if not org_lookup(org_id):
        raise _target_error(f"no org {org_id}", "unknown-org")
    provider = provider_lookup(org_id, service)
    if provider is None:
        raise _target_error(f"no token provider {service!r}", "unknown-service")

    try:
        header, claims = unverified(subject_token)
        idp = _identity_provider(idp_lookup(org_id), claims)
        claims = _verify(subject_token, header, idp, jwks, now)
    except TokenExchangeError:
        raise
    except AuthError as error:
        if error.status == 503:
            raise TokenExchangeError(
                "temporarily_unavailable", error.message, error.code, status=503
            ) from None
        raise _request_error(f"subject_token: {error.message}", error.code) from None

    try:
        intermediate = apply_mapping(idp.mapping, claims)
        act = apply_mapping(provider.mapping, intermediate)
    except AuthError as error:
        raise _target_error(error.message, error.code) from None
    key = key_lookup(provider.key_id)
    if key is None or key.org_id != org_id:
        raise _target_error(f"token provider {service!r} has no key", "unknown-key")
    exp = min(math.floor(claims["exp"]), math.floor(now) + MAX_ISSUED_LIFETIME_S)
    access_token = sign_token(key.id, key.secret, act, expires_at=exp, now=now)
    return {
        "access_token": access_token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
    }


def _target(audience: str | None) -> tuple[str, str]:
    if not audience:
        raise _request_error("audience is required", "missing-audience")
    parts = audience.removeprefix(TOKEN_AUDIENCE_PREFIX).split("/")
    if (
        not audience.startswith(TOKEN_AUDIENCE_PREFIX)
        or len(parts) != 2
        or not parts[0]
        or not SERVICE_NAME.fullmatch(parts[1])
    ):
        raise _target_error(
            f"audience must be {TOKEN_AUDIENCE_PREFIX}{{orgId}}/{{service}}", "bad-audience"
        )
    return parts[0], parts[1]


def _identity_provider(
    idps: Iterable[IdentityProvider], claims: dict[str, Any]
) -> IdentityProvider:
    token_audiences = audiences(claims)
    issuer = claims.get("iss")
    candidates = [idp for idp in idps if idp.matches(token_audiences, issuer)]
    if not candidates:
        raise _request_error(
            "no identity provider of this org trusts the token's aud/iss", "unknown-idp"
        )
    return max(candidates, key=lambda idp: idp.aud is not None and idp.iss is not None)


def _verify(
    token: str,
    header: Mapping[str, Any],
    idp: IdentityProvider,
    jwks: JwksCache,
    now: float,
) -> dict[str, Any]:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in idp.algs:
        raise AuthError(
            "unsupported-alg", 401, f"the identity provider does not accept alg {alg!r}"
        )
    kid = header.get("kid")
    if idp.jwks_url is not None:
        key = jwks.key(idp.jwks_url, kid if isinstance(kid, str) else None, alg, now)
    else:
        key = idp.static_key(alg)
    claims = verified_claims(token, key, alg)
    check_times(claims, now)
    return claims
