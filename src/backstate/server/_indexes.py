"""Indexes added to a machine that already exists (our extension; State Backed declares
indexes only when a machine is created):

- ``POST /machines/{m}/indexes {name, selector}`` (machines.write) -> 201 ``{index}``:
  the index is recorded as ``backfilling``; transitions index it at once and a
  background task indexes the instances that exist (runtime/_backfill).
- ``GET /machines/{m}/indexes`` (machines.read) -> ``{indexes: [...]}``, and
  ``GET /machines/{m}/indexes/{index}`` -> ``{index}``: each with its state
  (``backfilling``, ``ready``, ``failed``) and progress.

An index declared when its machine was created has no backfill: it is ``ready`` and its
selectors are its versions'.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backstate.auth import Scope
from backstate.store import IndexBackfillRow

from ._backend import Backend
from ._http import ApiError, JSONResponse, Requests, check_name, iso


def index_routes(backend: Backend) -> list[BaseRoute]:
    api = _Indexes(backend)
    return [
        Route("/machines/{machine}/indexes", api.list, methods=["GET"]),
        Route("/machines/{machine}/indexes", api.add, methods=["POST"]),
        Route("/machines/{machine}/indexes/{index}", api.get, methods=["GET"]),
    ]


def index_body(name: str, row: IndexBackfillRow | None) -> dict[str, Any]:
    if row is None:
        return {"name": name, "selector": None, "state": "ready"}
    return {
        "name": name,
        "selector": row.selector,
        "state": row.state,
        "done": row.done,
        "total": row.total,
        "skipped": row.skipped,
        "skipNote": row.skip_note,
        "error": row.error,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
    }


class _Indexes(Requests):
    async def _bodies(self, org_id: str, slug: str) -> list[dict[str, Any]]:
        machine = self.backend.machine(org_id, slug)
        added = {r.name: r for r in await self.backend.added_indexes(org_id, slug)}
        names = list(dict.fromkeys([*machine.indexes, *added]))
        return [index_body(name, added.get(name)) for name in names]

    async def list(self, request: Request) -> Response:
        principal = self.guard(request, Scope.MACHINES_READ)
        bodies = await self._bodies(principal.org_id, request.path_params["machine"])
        return JSONResponse({"indexes": bodies})

    async def get(self, request: Request) -> Response:
        principal = self.guard(request, Scope.MACHINES_READ)
        slug, index = request.path_params["machine"], request.path_params["index"]
        for body in await self._bodies(principal.org_id, slug):
            if body["name"] == index:
                return JSONResponse({"index": body})
        raise ApiError(404, "index-not-found", f"machine {slug!r} has no index {index!r}")

    async def add(self, request: Request) -> Response:
        principal = self.guard(request, Scope.MACHINES_WRITE)
        slug = request.path_params["machine"]
        self.backend.machine(principal.org_id, slug)
        body = await self.body(request)
        name = check_name(body.get("name"), "name")
        selector = body.get("selector")
        if not isinstance(selector, str):
            raise ApiError(
                400,
                "invalid-parameter",
                "selector must be a JSONPath into the context, or @state",
                "selector",
            )
        row = await self.backend.add_index(principal.org_id, slug, name, selector)
        return JSONResponse({"index": index_body(name, row)}, status_code=201)
