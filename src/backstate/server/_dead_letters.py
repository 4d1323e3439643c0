"""Dead letters over HTTP (our extension): messages between instances that exhausted
their retries, which the runtime keeps rather than drops.

``GET /dead-letters`` lists the caller's org's (oldest first, at most 100);
``POST /dead-letters/{id}/redeliver`` puts one back in its instance's inbox (and off the
list). Both need ``instances.admin``: a dead letter holds an event another instance
sent, which no machine authorizer has vetted for the caller.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backstate.auth import Scope
from backstate.runtime import NotFound
from backstate.store import DeadLetterRow

from ._backend import Backend
from ._http import JSONResponse, Requests, check_int, iso

PAGE = 100
SCAN = 10_000  # rows read to find one org's page: the list is global to the store


def dead_letter_routes(backend: Backend) -> list[BaseRoute]:
    api = _DeadLetters(backend)
    return [
        Route("/dead-letters", api.list, methods=["GET"]),
        Route("/dead-letters/{id}/redeliver", api.redeliver, methods=["POST"]),
    ]


def _address(runtime_name: str, org_id: str) -> tuple[str, str] | None:
    """``(machine, instance)`` of ``<org>.<machine>/<instance>``, if in ``org_id``."""
    machine, _, instance = runtime_name.partition("/")
    org, _, slug = machine.partition(".")
    return (slug, instance) if org == org_id and slug else None


def _body(row: DeadLetterRow, org_id: str) -> dict[str, Any]:
    sender = _address(row.sender, org_id)
    return {
        "id": row.id,
        "createdAt": iso(row.ts),
        "to": {"machineName": row.machine.partition(".")[2], "machineInstanceName": row.instance},
        "from": (
            {"machineName": sender[0], "machineInstanceName": sender[1]}
            if sender is not None
            else {"sender": row.sender}
        ),
        "event": row.event,
        "error": row.reason.replace(org_id + ".", ""),  # machines as the caller names them
        "attempts": row.attempts,
    }


class _DeadLetters(Requests):
    async def _rows(self, org_id: str) -> list[DeadLetterRow]:
        rows = await self.backend.runtime.dead_letters(SCAN)
        return [r for r in rows if r.machine.startswith(org_id + ".")]

    async def list(self, request: Request) -> Response:
        principal = self.guard(request, Scope.INSTANCES_ADMIN)
        rows = (await self._rows(principal.org_id))[:PAGE]
        return JSONResponse({"deadLetters": [_body(r, principal.org_id) for r in rows]})

    async def redeliver(self, request: Request) -> Response:
        principal = self.guard(request, Scope.INSTANCES_ADMIN)
        wanted = check_int(request.path_params["id"], "id")
        if not any(r.id == wanted for r in await self._rows(principal.org_id)):
            raise NotFound("dead-letter-not-found", f"no dead letter {wanted}")
        await self.backend.runtime.redeliver(wanted)
        return Response(status_code=204)
