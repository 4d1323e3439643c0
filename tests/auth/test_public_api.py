"""The public surface of backstate.auth does not drift."""

from __future__ import annotations

from backstate import auth

PUBLIC_API = [
    "ACCESS_TOKEN_TYPE",
    "ACT_HEADER",
    "ANONYMOUS_SERVICE",
    "API_AUDIENCE",
    "AuthError",
    "CLOCK_SKEW_S",
    "IDP_ALGORITHMS",
    "IdentityProvider",
    "JwksCache",
    "Key",
    "Principal",
    "SCOPE_PRESETS",
    "Scope",
    "TOKEN_AUDIENCE_PREFIX",
    "TOKEN_EXCHANGE_GRANT_TYPE",
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


def test_public_api_does_not_drift() -> None:
    assert sorted(auth.__all__) == PUBLIC_API
    for name in PUBLIC_API:
        assert hasattr(auth, name)
