"""The /rt WebSocket: State Backed's subscription protocol over the runtime's subscribe.

Access is checked for as long as a subscription lives, not only when it starts: each
update is sent only if the machine's ``allow_read`` still admits the subscriber, and a
connection whose token expires or whose key is deleted loses every subscription. Lost
access ends the subscription with the protocol's ``error`` message (``requestId``,
``status``, ``code``), which State Backed's client hands to the subscriber's ``onError``.
The socket itself stays open: that client reconnects at once on close, with the same
token in its URL, so closing would only make it retry a refused handshake in a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.websockets import WebSocket, WebSocketDisconnect

from backstate.auth import CLOCK_SKEW_S, AuthError, Principal
from backstate.runtime import BackstateError, Progress

from ._backend import Backend, runtime_name, state_body
from ._http import ApiError, loads

logger = logging.getLogger("backstate.server")

# How often a connection looks for its key having been deleted while no update comes.
ACCESS_CHECK_SECONDS = 1.0

Key = tuple[str, str]  # machine (as the caller names it), instance


def origin_allowed(ws: WebSocket, allowed: Callable[[str], bool]) -> bool:
    """A browser's WebSocket carries its page's Origin, and no CORS preflight protects
    it: the Origin must be this server's own or one ``serve --cors-origin`` allows.
    Clients that are not browsers send none."""
    origin = ws.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == ws.headers.get("host") or allowed(origin)


class Connection:
    """One accepted /rt socket and its subscriptions: one watcher per instance, shared
    by every request id that wants it (clients dispatch updates by instance)."""

    def __init__(
        self, backend: Backend, ws: WebSocket, principal: Principal, expires: float | None
    ) -> None:
        self.backend = backend
        self.ws = ws
        self.principal = principal
        self.expires = expires
        self.watchers: dict[Key, asyncio.Task[None]] = {}
        self.requests: dict[Key, set[str]] = {}
        self.lost: AuthError | None = None

    async def serve(self) -> None:
        guard = asyncio.create_task(self._guard_access())
        try:
            while True:
                await self._receive(await self.ws.receive_text())
        except WebSocketDisconnect:
            pass
        finally:
            guard.cancel()
            for task in self.watchers.values():
                task.cancel()

    async def _receive(self, text: str) -> None:
        try:
            message = loads(text, "the message")
        except ApiError as exc:
            await self._send_error(None, 400, exc.code)
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "ping":
            return
        request_id = message.get("requestId") if isinstance(message, dict) else None
        if kind not in ("subscribe-to-instance", "unsubscribe-from-instance"):
            await self._send_error(request_id, 400, "invalid-parameter")
            return
        machine, instance = message.get("machineName"), message.get("machineInstanceName")
        if not isinstance(machine, str) or not isinstance(instance, str):
            await self._send_error(request_id, 400, "invalid-parameter")
            return
        key = (machine, instance)
        if kind == "unsubscribe-from-instance":
            wanted = self.requests.get(key, set())
            wanted.discard(str(request_id))
            if not wanted:
                self._stop(key)
            return
        lost = self._access_lost()
        if lost is not None:
            await self._send_error(request_id, lost.status, lost.code)
            return
        self.requests.setdefault(key, set()).add(str(request_id))
        if key in self.watchers:
            self.watchers[key].cancel()  # restart: the new subscriber gets the current state
        self.watchers[key] = asyncio.create_task(self._watch(key))

    def _stop(self, key: Key) -> None:
        self.requests.pop(key, None)
        task = self.watchers.pop(key, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _access_lost(self) -> AuthError | None:
        """Why this connection's token no longer holds, if it does not: expired (with
        the skew its verification allowed), or its key deleted."""
        if self.lost is None:
            if self.expires is not None and time.time() >= self.expires + CLOCK_SKEW_S:
                self.lost = AuthError("token-expired", 401, "the token has expired")
            key_id = self.principal.key_id
            if key_id is not None and self.backend.lookup_key(key_id) is None:
                self.lost = AuthError("unknown-key", 401, "the token's key was deleted")
        return self.lost

    async def _guard_access(self) -> None:
        """End every subscription once access is lost, even with no update to send."""
        while self._access_lost() is None:
            wait = ACCESS_CHECK_SECONDS
            if self.expires is not None:
                wait = min(wait, max(self.expires + CLOCK_SKEW_S - time.time(), 0.0))
            await asyncio.sleep(wait)
        lost = self.lost
        assert lost is not None
        for key in list(self.watchers):
            await self._end(key, lost.status, lost.code)

    async def _watch(self, key: Key) -> None:
        slug, name = key
        auth = self.principal.auth_context
        try:
            self.backend.machine(self.principal.org_id, slug)
            machine = runtime_name(self.principal.org_id, slug)
            runtime = self.backend.runtime
            await runtime.get(machine, name)
            async for item in runtime.subscribe(machine, name, progress=True):
                lost = self._access_lost()
                if lost is not None:
                    raise lost
                if isinstance(item, Progress):
                    # Between updates: the last update's read check admitted it.
                    await self.ws.send_json(
                        {
                            "type": "instance-progress",
                            "machineName": slug,
                            "machineInstanceName": name,
                            "invokeId": item.invoke_id,
                            "ts": item.ts,
                            "data": item.data,
                        }
                    )
                    continue
                await runtime.check_read(machine, name, item, auth)
                await self.ws.send_json(
                    {
                        "type": "instance-update",
                        "machineName": slug,
                        "machineInstanceName": name,
                        **state_body(item),
                    }
                )
        except (BackstateError, AuthError) as exc:
            await self._end(key, getattr(exc, "status", 400), exc.code)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the socket closed under us
        except Exception:  # the machine's allow_read raised: its subscription's error
            logger.exception("/rt %s/%s: the update could not be checked", slug, name)
            await self._end(key, 500, "internal-error")

    async def _end(self, key: Key, status: int, code: str) -> None:
        """The subscription to ``key`` is over: each request id that wanted it is told."""
        request_ids = sorted(self.requests.get(key, ()))
        self._stop(key)
        for request_id in request_ids:
            await self._send_error(request_id, status, code)

    async def _send_error(self, request_id: Any, status: int, code: str) -> None:
        with contextlib.suppress(Exception):  # the socket may be gone already
            await self.ws.send_json(
                {"type": "error", "requestId": request_id, "status": status, "code": code}
            )
