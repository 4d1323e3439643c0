"""Serving the app on uvicorn, as ``backstate serve`` and ``dev`` do: their shared
settings, and a shutdown that ends within a bounded time whatever is in flight.

At SIGTERM (or SIGINT) uvicorn stops accepting connections and waits for the requests
in flight. After ``grace`` seconds the runtime answers every caller still waiting (an
event whose services have not settled, work not yet applied) with 503
``shutting-down``; a second later uvicorn cancels whatever is left (a request stuck
elsewhere), and the runtime closes, itself given ``CLOSE_TIMEOUT`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from types import FrameType
from typing import Any

import uvicorn

from . import _protocol
from ._backend import Backend

logger = logging.getLogger("backstate.server")

DEFAULT_GRACE = 10.0
CLOSE_TIMEOUT = 10.0


def uvicorn_options(host: str, port: int, grace: float) -> dict[str, Any]:
    """Errors only in uvicorn's own log, no access log, no proxy or server headers
    (per-request work on the hot path), the bounded protocol (head size, slow clients:
    see _protocol); requests cancelled ``grace`` + 1 s after the signal."""
    return {
        **_protocol.uvicorn_options(),
        "host": host,
        "port": port,
        "log_level": "warning",
        "access_log": False,
        "proxy_headers": False,
        "server_header": False,
        "timeout_graceful_shutdown": grace + 1.0,
    }


class Serving(uvicorn.Server):
    """uvicorn's server, whose shutdown answers waiting callers after ``grace``."""

    def __init__(self, config: uvicorn.Config, backend: Backend, grace: float) -> None:
        super().__init__(config)
        self.backend = backend
        self.grace = grace
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit and self._loop is not None:
            busy = len(self.server_state.tasks)
            if busy:
                # Else the grace period passes in silence: say what the wait is for.
                logger.warning(
                    "shutting down: %d request%s in flight may take up to %g s"
                    " (--shutdown-grace), then get 503 shutting-down",
                    busy,
                    "" if busy == 1 else "s",
                    self.grace,
                )
            self._loop.call_soon_threadsafe(
                self._loop.call_later, self.grace, self.backend.runtime.processor.refuse_waiting
            )
        super().handle_exit(sig, frame)
