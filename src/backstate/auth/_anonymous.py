"""Anonymous sessions: token exchange with an IdP whose key is the org id itself.

``@statebacked/client`` signs ``{aud, iss, iat, exp: iat + 86400, sid, did}`` with HS256,
HMAC key = the org id's UTF-8 bytes, ``aud = iss = https://{orgId}.anonymous.auth.statebacked.dev``,
and exchanges it with the ``anonymous-statebacked-dev`` token provider. Anyone can mint
such a token, which is why the mappings let through only ``sid`` and ``did`` and stamp
``auth: "anonymous"``: authorizers tell these sessions apart by that claim.
"""

from __future__ import annotations

from ._keys import b64url
from ._providers import IdentityProvider, TokenProvider

ANONYMOUS_SERVICE = "anonymous-statebacked-dev"


def anonymous_issuer(org_id: str) -> str:
    return f"https://{org_id}.anonymous.auth.statebacked.dev"


def anonymous_idp(org_id: str) -> IdentityProvider:
    """The IdP an org with anonymous access has."""
    issuer = anonymous_issuer(org_id)
    return IdentityProvider(
        aud=issuer,
        iss=issuer,
        algs=("HS256",),
        mapping={"sid.$": "$.sid", "did.$": "$.did"},
        key=b64url(org_id.encode("utf-8")),
    )


def anonymous_provider(key_id: str) -> TokenProvider:
    """The token provider for anonymous sessions; ``key_id`` should be a production key."""
    return TokenProvider(
        service=ANONYMOUS_SERVICE,
        key_id=key_id,
        mapping={"sid.$": "$.sid", "did.$": "$.did", "auth": "anonymous"},
    )
