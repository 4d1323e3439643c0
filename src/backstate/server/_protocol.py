"""How ``serve`` and ``dev`` run uvicorn: its h11 protocol, bounded, with the deadlines
uvicorn lacks.

uvicorn with httptools (its default when installed) puts no bound on a request's head:
one 200 MB header was read whole. h11 refuses a head larger than its
``max_incomplete_event_size`` (uvicorn's ``h11_max_incomplete_event_size``) as soon as
that much is buffered, so ``serve`` uses h11 with ``MAX_HEAD_BYTES``. uvicorn has no
timeout for receiving a request (its keep-alive timeout covers only the idle time
between requests, and any byte resets it), so a client sending a byte at a time held a
connection for ever: ``DeadlineH11Protocol`` gives a request's head ``HEAD_TIMEOUT_S``
and its body ``BODY_TIMEOUT_S``, then answers 408 ``request-timeout`` and closes. A
request whose head and body come in one read (nearly all) never arms a timer. A body
nobody reads (its answer went out first) ends the connection once the answer is
complete, instead of being waited for.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEAD_BYTES = 16_384  # request line and headers; h11's own default, made explicit
MAX_HEADERS = 100  # counted by the app (HotRoutes): h11 bounds only the head's size
HEAD_TIMEOUT_S = 5.0  # a client sends its head in one go; 16 kB need no more on any link
BODY_TIMEOUT_S = 15.0  # the 1 MB default body limit at 67 kB/s
MAX_WS_MESSAGE_BYTES = 65_536  # /rt messages are a few hundred bytes

_TIMEOUTS = {"head": HEAD_TIMEOUT_S, "body": BODY_TIMEOUT_S}


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with deadlines: a request's head must arrive within
    ``HEAD_TIMEOUT_S`` of the connection or of the request's first byte, its body within
    ``BODY_TIMEOUT_S`` of its head."""

    _timer: asyncio.TimerHandle | None = None
    _waiting_for: str | None = None  # "head" or "body", while a timer is armed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait("head", HEAD_TIMEOUT_S)  # also for a client that sends nothing

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Judged after h11 has read the data, so a request that came whole arms nothing;
        # a deadline, once armed, runs from the first byte of what it waits for.
        state = self.conn.their_state
        waiting_for = "head" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
        if waiting_for != self._waiting_for:
            self._stop()
            if waiting_for is not None:
                self._wait(waiting_for, _TIMEOUTS[waiting_for])

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what h11 cannot parse, as the API's errors are: 431
        ``head-too-large`` when the head outgrew ``MAX_HEAD_BYTES`` (its buffer is
        dropped with the connection), else 400 ``invalid-http``."""
        too_large = len(self.conn.trailing_data[0]) > MAX_HEAD_BYTES
        status, code, message = (
            (431, "head-too-large", f"a request's head is limited to {MAX_HEAD_BYTES} bytes")
            if too_large
            else (400, "invalid-http", "the request is not valid HTTP/1.1")
        )
        body = orjson.dumps({"error": message, "code": code})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        self.transport.write(
            self.conn.send(h11.Response(status_code=status, headers=headers)) or b""
        )
        self.transport.write(self.conn.send(h11.Data(data=body)) or b"")
        self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        self.transport.close()

    def on_response_complete(self) -> None:
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self.transport.close()  # the rest of the body would only be thrown away
            return
        super().on_response_complete()

    def _wait(self, part: str, seconds: float) -> None:
        self._waiting_for = part
        self._timer = self.loop.call_later(seconds, self._too_slow)

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._waiting_for = None

    def _too_slow(self) -> None:
        part, self._timer, self._waiting_for = self._waiting_for, None, None
        if part is None or self.transport.is_closing():
            return
        cycle = self.cycle if part == "body" else None
        if cycle is not None:
            cycle.disconnected = True  # the app's own answer, if it still makes one, is dropped
        if cycle is None or not cycle.response_started:
            body = orjson.dumps(
                {
                    "error": f"the request's {part} took more than {_TIMEOUTS[part]:g} s",
                    "code": "request-timeout",
                }
            )
            # Written as bytes: h11 answers only a request it has read whole.
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
        self.transport.close()


def uvicorn_options() -> dict[str, Any]:
    """The protocol settings of ``serve`` and ``dev`` (see the module's docstring)."""
    return {
        "http": DeadlineH11Protocol,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        "ws_max_size": MAX_WS_MESSAGE_BYTES,
    }
