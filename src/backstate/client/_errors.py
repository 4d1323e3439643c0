"""Errors the client raises, mirroring ``@statebacked/client``'s ``errors``.

ApiError                              status  code (``.code``; the server's, else the default)
├── BadRequest                        400     invalid-parameter, invalid-json, ...
│   ├── OrgHeaderRequired             400     specify-org
│   └── NoMigrationPath               400     no-migration-path
├── Unauthorized                      401     missing-token, token-expired, unknown-key, ...
│                                             token-unavailable: the client could not get one
├── Forbidden                         403
│   ├── MissingScope                  403     missing-scope
│   ├── RejectedByMachineAuthorizer   403     rejected-by-machine-authorizer
│   ├── MissingUser                   403     missing-user
│   └── MissingOrg                    403     missing-org
├── NotFound                          404     machine-not-found, instance-not-found, ...
├── Conflict                          409     invalid-state
├── PayloadTooLarge                   413     payload-too-large
├── ServerError                       5xx     store-unavailable, internal-error, ...
└── Unreachable                       0       unreachable: no answer (refused, timed out)

State Backed's client calls its 403 class ``UnauthorizedError``; here 401 (who are you?)
and 403 (you may not) are two classes, as in HTTP. A code the server sends that has a
class of its own (``missing-scope``) picks that class; any other code picks the class of
its status.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar


class ApiError(Exception):
    """The server refused a request (or could not be reached): ``status``, a stable
    ``code``, the server's ``message`` and, when a request field is at fault,
    ``parameter``."""

    status: int = 0
    default_code: ClassVar[str] = "api-error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        parameter: str | None = None,
    ) -> None:
        self.code = code or self.default_code
        if status is not None:
            self.status = status
        self.message = message
        self.parameter = parameter
        super().__init__(f"{message} ({self.status} {self.code})")


class BadRequest(ApiError):
    status = 400
    default_code = "bad-request"


class OrgHeaderRequired(BadRequest):
    default_code = "specify-org"


class NoMigrationPath(BadRequest):
    default_code = "no-migration-path"


class Unauthorized(ApiError):
    status = 401
    default_code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    default_code = "forbidden"


class MissingScope(Forbidden):
    default_code = "missing-scope"


class RejectedByMachineAuthorizer(Forbidden):
    default_code = "rejected-by-machine-authorizer"


class MissingUser(Forbidden):
    default_code = "missing-user"


class MissingOrg(Forbidden):
    default_code = "missing-org"


class NotFound(ApiError):
    status = 404
    default_code = "not-found"


class Conflict(ApiError):
    status = 409
    default_code = "invalid-state"


class PayloadTooLarge(ApiError):
    status = 413
    default_code = "payload-too-large"


class ServerError(ApiError):
    status = 500
    default_code = "server-error"


class Unreachable(ApiError):
    default_code = "unreachable"


_BY_CODE: dict[str, type[ApiError]] = {
    cls.default_code: cls
    for cls in (
        OrgHeaderRequired,
        NoMigrationPath,
        MissingScope,
        RejectedByMachineAuthorizer,
        MissingUser,
        MissingOrg,
    )
}
_BY_STATUS: dict[int, type[ApiError]] = {
    cls.status: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge)
}


def error_for(
    status: int, code: str | None, message: str, parameter: str | None = None
) -> ApiError:
    """The error for a status and the server's code."""
    cls = _BY_CODE.get(code or "")
    if cls is None or cls.status != status:
        cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(message, code=code, status=status, parameter=parameter)


def error_from_response(status: int, content: bytes) -> ApiError:
    """The error for an HTTP error response: ``{error, code, parameter?}``, or token
    exchange's RFC 6749 ``{error, error_description, code}``."""
    try:
        body: Any = json.loads(content) if content else {}
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    text = content.decode("utf-8", "replace").strip()[:200] if content else ""
    message = body.get("error_description") or body.get("error") or text
    parameter = body.get("parameter")
    return error_for(
        status,
        body.get("code") if isinstance(body.get("code"), str) else None,
        message if isinstance(message, str) and message else f"HTTP {status}",
        parameter if isinstance(parameter, str) else None,
    )
