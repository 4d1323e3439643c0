"""The dashboard's files, served at ``/dashboard/`` (and ``/`` redirects there).

The dashboard is static: HTML, its script, a stylesheet, and mermaid with the label
decoding ``backstate viz`` uses too (both from ``backstate.viz``), all inside the package. It talks to the server only through the
public API and /rt with a bearer token it signs (or is given) in the browser, so it adds
no way into the server: these routes serve the same bytes to anyone and read nothing.

Every response carries a strict Content-Security-Policy: scripts only from this origin
(no inline script, no eval), nothing framed, no form posts, connections only back to
this origin. ``style-src`` also allows inline styles: mermaid writes its SVG's styles
inline; no script can run through a style, and every text the page shows is set as text.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ._http import ApiError

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-cache",
}
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _files() -> dict[str, Traversable]:
    """Every file the dashboard serves, by its path under /dashboard/: a fixed list, so
    no request path ever reaches the file system."""
    own = resources.files("backstate.server").joinpath("dashboard")
    vendor = resources.files("backstate.viz").joinpath("vendor")
    found = {f.name: f for f in own.iterdir() if f.is_file() and f.name.endswith(tuple(TYPES))}
    found["vendor/mermaid.min.js"] = vendor.joinpath("mermaid.min.js")
    found["labels.js"] = resources.files("backstate.viz").joinpath("labels.js")
    return found


def dashboard_routes() -> list[BaseRoute]:
    files = _files()

    async def asset(request: Request) -> Response:
        name = request.path_params.get("path") or "index.html"
        file = files.get(name)
        if file is None:
            raise ApiError(404, "not-found", f"no dashboard file {name!r}")
        kind = TYPES[name[name.rindex(".") :]]
        return Response(file.read_bytes(), media_type=kind, headers=HEADERS)

    async def to_dashboard(request: Request) -> Response:
        return RedirectResponse("/dashboard/", status_code=307)

    return [
        Route("/", to_dashboard, methods=["GET"]),
        Route("/dashboard", to_dashboard, methods=["GET"]),
        Route("/dashboard/", asset, methods=["GET"]),
        Route("/dashboard/{path:path}", asset, methods=["GET"]),
    ]
