"""Per-org secrets over HTTP (backstate's extension), stored sealed with the server's key.

``GET /secrets`` lists the caller's org's secrets by name (never their values);
``PUT /secrets/{name}`` ``{"value": "..."}`` sets one (204); ``DELETE /secrets/{name}``
removes it (204, 404 if there was none). All three need ``org.secrets.admin``, which no
preset grants: a secret is for the org's machine code (runtime/_secrets), and nothing
in the API ever answers with a value.

Sealing: AES-256-GCM with the server's key, a fresh nonce per value, and the org and
name as associated data (a sealed value moved to another row does not open). The key is
``BACKSTATE_SECRETS_KEY`` (32 bytes, base64) if set, else the file ``--secrets-key``
(by default ``secrets.key`` beside the credentials file), created on the first start
with mode 0600. Every node sharing a store needs the same key; a lost key loses the
secrets (set them again).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backstate.auth import Scope
from backstate.store import SecretRow

from ._backend import Backend
from ._http import ApiError, JSONResponse, Requests, check_name, iso

MAX_VALUE_BYTES = 64_000
MAX_SECRETS = 1000  # per org


def secret_routes(backend: Backend) -> list[BaseRoute]:
    api = _Secrets(backend)
    return [
        Route("/secrets", api.list, methods=["GET"]),
        Route("/secrets/{name}", api.put, methods=["PUT"]),
        Route("/secrets/{name}", api.delete, methods=["DELETE"]),
    ]


class _Secrets(Requests):
    async def list(self, request: Request) -> Response:
        principal = self.guard(request, Scope.SECRETS_ADMIN)
        rows = self.backend.control.secrets(principal.org_id)
        return JSONResponse(
            {"secrets": [{"name": r.name, "updatedAt": iso(r.updated_at)} for r in rows]}
        )

    async def put(self, request: Request) -> Response:
        principal = self.guard(request, Scope.SECRETS_ADMIN)
        name = check_name(request.path_params["name"], "name")
        body: Any = await self.body(request)
        value = body.get("value")
        if not isinstance(value, str) or len(value.encode()) > MAX_VALUE_BYTES:
            raise ApiError(
                400,
                "invalid-parameter",
                f"value must be a string of at most {MAX_VALUE_BYTES} bytes",
                "value",
            )
        org_id = principal.org_id
        existing = {r.name for r in self.backend.control.secrets(org_id)}
        if name not in existing and len(existing) >= MAX_SECRETS:
            raise ApiError(409, "too-many-secrets", f"an org has at most {MAX_SECRETS} secrets")
        sealed = self.backend.secret_box.seal(org_id, name, value)
        self.backend.control.put_secret(SecretRow(org_id, name, sealed, int(time.time() * 1000)))
        self.backend.secrets_changed()
        return Response(status_code=204)

    async def delete(self, request: Request) -> Response:
        principal = self.guard(request, Scope.SECRETS_ADMIN)
        name = check_name(request.path_params["name"], "name")
        if not self.backend.control.delete_secret(principal.org_id, name):
            raise ApiError(404, "secret-not-found", f"no secret {name!r}", "name")
        self.backend.secrets_changed()
        return Response(status_code=204)
