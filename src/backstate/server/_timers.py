"""``GET /machines/{m}/i/{i}/timers`` (our extension, instances.admin): an instance's
pending timers (``after`` transitions and delayed sends), soonest first, read from the
store (so any node answers).

The store lists timers of every instance; this filters them, which is fine for a page
someone opens, not for a hot path."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backstate.auth import Scope

from ._backend import Backend, runtime_name
from ._http import JSONResponse, Requests, check_name, iso


def timer_routes(backend: Backend) -> list[BaseRoute]:
    api = _Timers(backend)
    return [Route("/machines/{machine}/i/{instance}/timers", api.timers, methods=["GET"])]


class _Timers(Requests):
    async def timers(self, request: Request) -> Response:
        principal = self.guard(request, Scope.INSTANCES_ADMIN)
        slug = request.path_params["machine"]
        self.backend.machine(principal.org_id, slug)
        machine = runtime_name(principal.org_id, slug)
        name = check_name(request.path_params["instance"], "machineInstanceName")
        await self.backend.runtime.get(machine, name)
        rows = await asyncio.to_thread(self.backend.runtime.store.pending_timers)
        return JSONResponse(
            {
                "timers": [
                    {"id": r.key, "dueAt": iso(r.due), "event": r.event}
                    for r in rows
                    if r.machine == machine and r.instance == name
                ]
            }
        )
