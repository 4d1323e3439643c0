"""``GET /machines/{m}/v/{version}/diagram`` (our extension): what the dashboard draws
of a version: its outline (``backstate.chart`` outline), the mermaid text of it, and the
mermaid name of each state (so a page can find a state's box in the drawn SVG).

A version stored by a backstate that did not record outlines is drawn from its skeleton:
its states, without transitions (``"complete": false``)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from backstate.auth import Scope
from backstate.chart._describe import shape
from backstate.runtime import NotFound
from backstate.viz import outline, state_names, to_mermaid

from ._backend import Backend
from ._http import JSONResponse, Requests


def diagram_routes(backend: Backend) -> list[BaseRoute]:
    api = _Diagrams(backend)
    return [Route("/machines/{machine}/v/{version}/diagram", api.diagram, methods=["GET"])]


class _Diagrams(Requests):
    async def diagram(self, request: Request) -> Response:
        principal = self.guard(request, Scope.MACHINE_VERSIONS_READ)
        slug, version_id = request.path_params["machine"], request.path_params["version"]
        self.backend.machine(principal.org_id, slug)
        versions = self.backend.control.versions(principal.org_id, slug)
        row = next((v for v in versions if v.id == version_id), None)
        if row is None or row.definition is None:
            raise NotFound(
                "machine-version-not-found", f"machine {slug!r} has no version {version_id!r}"
            )
        drawn: dict[str, Any] | None = row.definition.get("outline")
        complete = drawn is not None
        if drawn is None:
            drawn = outline(shape(row.definition["skeleton"]))
        return JSONResponse(
            {
                "machineVersionId": row.id,
                "complete": complete,
                "outline": drawn,
                "mermaid": to_mermaid(drawn),
                "stateNames": state_names(drawn),
            }
        )
