"""Errors of the auth layer, each with a stable code and an HTTP status.

AuthError                  code                                                 status
│   request tokens         missing-token, malformed-token, unsupported-alg,
│                          unknown-key, bad-signature, invalid-key, missing-exp,
│                          token-expired, token-not-yet-valid, wrong-audience   401
│   JWKS                   unknown-kid, invalid-key                             401
│                          jwks-unavailable                                     503
│   scopes                 missing-scope                                        403
│   key requests           unknown-scope, unknown-use, use-and-scopes,
│                          missing-scopes                                       400
│   configuration          invalid-idp, invalid-token-provider, invalid-mapping 400
│   impersonation          invalid-act                                          400
└── TokenExchangeError     an RFC 6749 error (invalid_request, invalid_target,
                           unsupported_grant_type: 400; temporarily_unavailable:
                           503) and a finer ``reason``: one of the codes above, or
                           unknown-idp, unknown-org, unknown-service, bad-audience, ...

``parameter`` names the request field at fault, when there is one (the API's
``{error, code, parameter}`` body).
"""

from __future__ import annotations


class AuthError(Exception):
    def __init__(self, code: str, status: int, message: str, parameter: str | None = None) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.status = status
        self.message = message
        self.parameter = parameter


class TokenExchangeError(AuthError):
    def __init__(self, code: str, message: str, reason: str, status: int = 400) -> None:
        super().__init__(code, status, message)
        self.reason = reason

    def body(self) -> dict[str, str]:
        """The RFC 6749 section 5.2 error response."""
        return {"error": self.code, "error_description": self.message}
