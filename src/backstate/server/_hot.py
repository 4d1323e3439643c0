"""The hot routes (send an event, read an instance) dispatched in front of Starlette.

Starlette's middleware stack and router cost about as much per request as the whole
event path behind them. ``HotRoutes`` matches the few routes that carry the load with
one regular expression each and calls the very same endpoint methods that the Starlette
routes call, with a Starlette ``Request``; errors are answered by the same handler.
Anything else (other routes, WebSockets, lifespan) passes through to the Starlette app.

Being the first of our code to see each request, it also refuses one with more than
``MAX_HEADERS`` headers (431 ``too-many-headers``): h11 bounds a head's size, not its
count, and every header is work for whatever reads the headers after it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ._http import HANDLED_ERRORS, error_response, handle_error
from ._protocol import MAX_HEADERS

logger = logging.getLogger("backstate.server")

Endpoint = Callable[[Request], Awaitable[Response]]

# Starlette's path parameters match one segment: the same here.
_SEGMENT = r"[^/]+"


def path_pattern(template: str) -> re.Pattern[str]:
    """``/machines/{machine}/i`` -> a regular expression with named groups."""
    return re.compile(re.sub(r"\{(\w+)\}", rf"(?P<\1>{_SEGMENT})", template))


class HotRoutes:
    def __init__(self, app: ASGIApp, routes: Sequence[tuple[str, str, Endpoint]]) -> None:
        self.app = app
        self.routes = [(method, path_pattern(path), endpoint) for method, path, endpoint in routes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if len(scope["headers"]) > MAX_HEADERS:
                response = error_response(
                    431, "too-many-headers", f"requests carry at most {MAX_HEADERS} headers"
                )
                await response(scope, receive, send)
                return
            method, path = scope["method"], scope["path"]
            for wanted, pattern, endpoint in self.routes:
                if method == wanted and (match := pattern.fullmatch(path)) is not None:
                    scope["path_params"] = match.groupdict()
                    await self._answer(endpoint, scope, receive, send)
                    return
        elif scope["type"] == "websocket" and len(scope["headers"]) > MAX_HEADERS:
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)

    async def _answer(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response: Any
        try:
            response = await endpoint(request)
        except HANDLED_ERRORS as exc:
            response = await handle_error(request, exc)
        except Exception:
            logger.exception("%s %s failed", scope["method"], scope["path"])
            response = error_response(500, "internal-error", "internal error")
        await response(scope, receive, send)
