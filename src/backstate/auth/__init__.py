"""backstate.auth: keys, scopes and tokens, with no HTTP in it.

The server calls ``verify_request_token`` for each request, ``require_scope`` and
``act_as`` to authorize it, and ``exchange`` for ``POST /tokens``. See docs/auth.md.
"""

from ._anonymous import ANONYMOUS_SERVICE, anonymous_idp, anonymous_issuer, anonymous_provider
from ._errors import AuthError, TokenExchangeError
from ._exchange import (
    ACCESS_TOKEN_TYPE,
    TOKEN_AUDIENCE_PREFIX,
    TOKEN_EXCHANGE_GRANT_TYPE,
    exchange,
)
from ._jwks import JwksCache
from ._jws import CLOCK_SKEW_S, IDP_ALGORITHMS
from ._keys import (
    SCOPE_PRESETS,
    Key,
    Scope,
    new_key,
    new_org_id,
    parse_key_scopes,
)
from ._mapping import apply_mapping, validate_mapping
from ._principal import ACT_HEADER, Principal, act_as, require_scope
from ._providers import IdentityProvider, TokenProvider
from ._tokens import API_AUDIENCE, sign_token, verify_request_token

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "ACT_HEADER",
    "ANONYMOUS_SERVICE",
    "API_AUDIENCE",
    "CLOCK_SKEW_S",
    "IDP_ALGORITHMS",
    "SCOPE_PRESETS",
    "TOKEN_AUDIENCE_PREFIX",
    "TOKEN_EXCHANGE_GRANT_TYPE",
    "AuthError",
    "IdentityProvider",
    "JwksCache",
    "Key",
    "Principal",
    "Scope",
    "TokenExchangeError",
    "TokenProvider",
    "act_as",
    "anonymous_idp",
    "anonymous_issuer",
    "anonymous_provider",
    "apply_mapping",
    "exchange",
    "new_key",
    "new_org_id",
    "parse_key_scopes",
    "require_scope",
    "sign_token",
    "validate_mapping",
    "verify_request_token",
]
