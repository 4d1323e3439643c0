"""The /rt socket on asyncio: connects while anyone is subscribed, reconnects.

Each connection attempt asks for a token at that moment, and a reconnect for a new one
(State Backed's client reuses the URL, and so the token, of its first connection).
After a lost connection it waits ``Backoff.delay(attempt)`` before the next attempt;
the attempt count starts over once a connection opens. A refused handshake (401 or
403: the token or its scopes) and a token that cannot be had for a reason other than
the server being unreachable or failing end every subscription with that error:
retrying would not change the answer. The sync ``Client`` runs this on a background
event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from ._errors import ApiError, ServerError, Unreachable, error_for
from ._realtime import PING, Backoff, Delivery, Subscriptions, Watch

TokenGetter = Callable[[bool], Awaitable[str | None]]  # (fresh) -> token
_CLOSE = object()


class RealtimeConnection:
    def __init__(
        self,
        url: Callable[[str | None], str],
        token: TokenGetter,
        *,
        backoff: Backoff,
        ping_interval_s: float,
        open_timeout_s: float = 10.0,
    ) -> None:
        self._url = url
        self._token = token
        self._backoff = backoff
        self._ping_interval_s = ping_interval_s
        self._open_timeout_s = open_timeout_s
        self._subscriptions = Subscriptions()
        self._task: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[Any] | None = None
        self.connections = 0  # sockets opened so far; each one after the first is a reconnect

    def add(self, machine: str, instance: str, deliver: Delivery, progress: bool = False) -> Watch:
        """Subscribe (on the event loop's thread)."""
        watch = self._subscriptions.add(machine, instance, deliver, progress)
        if self._outbox is not None:
            watch.connected = True
            self._outbox.put_nowait(watch.message("subscribe-to-instance"))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return watch

    def remove(self, watch: Watch) -> None:
        """Unsubscribe (on the event loop's thread); the last one closes the socket."""
        message = self._subscriptions.remove(watch)
        if self._outbox is not None:
            if message is not None:
                self._outbox.put_nowait(message)
            if not self._subscriptions:
                self._outbox.put_nowait(_CLOSE)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._subscriptions.end_all()

    async def _run(self) -> None:
        attempt = 0
        while self._subscriptions:
            try:
                token = await self._token(self.connections > 0 or attempt > 0)
                async with connect(
                    self._url(token),
                    open_timeout=self._open_timeout_s,
                    close_timeout=2,
                    max_size=2**23,
                ) as socket:
                    attempt = 0
                    await self._serve(socket)
            except InvalidStatus as refused:
                status = refused.response.status_code
                if status in (401, 403):
                    # The server answers the handshake with the API's error body.
                    code, message = None, f"the server refused the /rt connection ({status})"
                    with contextlib.suppress(ValueError, AttributeError):
                        body = json.loads(refused.response.body or b"")
                        code, message = body.get("code"), body.get("error") or message
                    self._subscriptions.fail_all(error_for(status, code, message))
                    return
            except (Unreachable, ServerError, OSError, TimeoutError, WebSocketException):
                pass
            except ApiError as error:
                self._subscriptions.fail_all(error)
                return
            finally:
                self._outbox = None
                self._subscriptions.disconnected()
            if self._subscriptions:
                await asyncio.sleep(self._backoff.delay(attempt))
                attempt += 1

    async def _serve(self, socket: ClientConnection) -> None:
        self.connections += 1
        outbox: asyncio.Queue[Any] = asyncio.Queue()
        for message in self._subscriptions.connected():
            outbox.put_nowait(message)
        self._outbox = outbox
        tasks = [
            asyncio.create_task(self._write(socket, outbox)),
            asyncio.create_task(self._ping(outbox)),
        ]
        try:
            async for text in socket:
                self._subscriptions.receive(text)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _write(self, socket: ClientConnection, outbox: asyncio.Queue[Any]) -> None:
        while True:
            message = await outbox.get()
            if message is _CLOSE:
                if not self._subscriptions:
                    await socket.close()
                    return
                continue
            await socket.send(json.dumps(message))

    async def _ping(self, outbox: asyncio.Queue[Any]) -> None:
        """State Backed drops sockets silent for 5 minutes (websockets' own pings, every
        20 s, are what notice a dead connection)."""
        while True:
            await asyncio.sleep(self._ping_interval_s)
            outbox.put_nowait(PING)
