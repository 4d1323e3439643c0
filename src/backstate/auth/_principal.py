"""Who a request acts for: its org, key and scopes, and the auth context authorizers see.

Impersonation: a principal allowed to create keys may send ``x-statebacked-act`` with a
JSON object, which replaces the auth context (the CLI's ``--auth-context``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ._errors import AuthError
from ._keys import Scope

ACT_HEADER = "x-statebacked-act"


@dataclass(frozen=True, slots=True)
class Principal:
    org_id: str
    key_id: str | None  # None for an admin session, which no key signs
    scopes: frozenset[Scope]
    auth_context: dict[str, Any]
    admin: bool = False  # a human admin session: holds every scope

    def has_scope(self, scope: Scope) -> bool:
        return self.admin or scope in self.scopes


def require_scope(principal: Principal, scope: Scope) -> None:
    if not principal.has_scope(scope):
        raise AuthError("missing-scope", 403, f"this request needs the {scope} scope")


def act_as(principal: Principal, header_value: str) -> dict[str, Any]:
    """The auth context that ``x-statebacked-act: header_value`` asks for."""
    if not principal.has_scope(Scope.ORG_KEYS_WRITE):
        raise AuthError(
            "missing-scope",
            403,
            f"{ACT_HEADER} needs the {Scope.ORG_KEYS_WRITE} scope or an admin session",
        )
    try:
        claims = json.loads(header_value)
    except RecursionError:
        raise AuthError("invalid-act", 400, f"{ACT_HEADER} nests too deep", ACT_HEADER) from None
    except ValueError:
        raise AuthError("invalid-act", 400, f"{ACT_HEADER} is not JSON", ACT_HEADER) from None
    if not isinstance(claims, dict):
        raise AuthError("invalid-act", 400, f"{ACT_HEADER} is not a JSON object", ACT_HEADER)
    return claims
