"""Identity routes: orgs, keys, identity providers, token providers, token exchange."""

from __future__ import annotations

from starlette.routing import BaseRoute

from ._backend import Backend


def identity_routes(backend: Backend) -> list[BaseRoute]:
    return []
