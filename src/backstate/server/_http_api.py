"""The HTTP API mapper: ``/http-api/{org}/machines/{machine}/{slug}``."""

from __future__ import annotations

from starlette.routing import BaseRoute

from ._backend import Backend


def http_api_routes(backend: Backend) -> list[BaseRoute]:
    return []
