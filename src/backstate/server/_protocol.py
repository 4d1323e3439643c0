"""How ``serve`` and ``dev`` run uvicorn: its httptools protocol, with the bounds and
deadlines uvicorn lacks.

uvicorn puts no bound on a request's head with httptools (llhttp leaves that to its
caller, and httptools keeps growing a header's value), so one 200 MB header was read
whole; and it has no timeout for receiving a request (its keep-alive timeout covers only
the idle time between requests, and any byte resets it), so a client sending a byte at a
time held its connection for ever. ``BoundedHttpToolsProtocol`` is uvicorn's protocol
plus: a head of more than ``MAX_HEAD_BYTES`` is answered 431 ``head-too-large`` as soon
as that much has come (memory holds at most that and one read more), a head must arrive
within ``HEAD_TIMEOUT_S`` and a body within ``BODY_TIMEOUT_S`` of its head, else 408
``request-timeout`` (a body answered before it came whole, which uvicorn throws away as
it comes, is cut off at its deadline all the same). A request whose head and body come
in one read (nearly all) arms no timer.

uvicorn's h11 protocol does bound the head (``h11_max_incomplete_event_size``), but h11
parses in Python: with it, send-event throughput fell by about 40 % and reads by half
(benchmarks/http.py), for what a byte count in ``data_received`` does here.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 16_384  # request line and headers (h11's default)
MAX_HEADERS = 100  # counted by the app (HotRoutes), where the headers are a list
HEAD_TIMEOUT_S = 5.0  # a client sends its head in one go; 16 kB need no more on any link
BODY_TIMEOUT_S = 15.0  # the 1 MB default body limit at 67 kB/s
MAX_WS_MESSAGE_BYTES = 65_536  # /rt messages are a few hundred bytes

_TIMEOUTS = {"head": HEAD_TIMEOUT_S, "body": BODY_TIMEOUT_S}


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounded (see the module's docstring)."""

    _timer: asyncio.TimerHandle | None = None
    _waiting_for: str | None = None  # the part a deadline runs for: "head" or "body"
    _reading: str | None = "head"  # the part of a request being parsed, None between them
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait("head")  # also for a client that sends nothing

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        reading = self._reading
        if reading is None and self._timer is None:
            return  # a whole request (nearly all of them): nothing to count or time
        if self.transport.is_closing():
            return  # refused
        if reading == "head":
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(
                    431, "head-too-large", f"a request's head is limited to {MAX_HEAD_BYTES} bytes"
                )
                return
        # Judged after the parser has read the data, so a request that came whole arms
        # nothing; a deadline, once armed, runs from the first byte of what it waits for.
        if reading != self._waiting_for:
            self._stop()
            if reading is not None:
                self._wait(reading)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading, self._head_bytes = "head", 0

    def on_headers_complete(self) -> None:
        self._reading = "body"
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not previous and cycle is not None:
            cycle.transport = _OneWrite(self.transport, cycle)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._reading = None
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._stop()
        self._reading = None  # the WebSocket protocol reads from here on
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what llhttp cannot parse, as the API's errors are."""
        self._refuse(400, "invalid-http", "the request is not valid HTTP/1.1")

    def _wait(self, part: str) -> None:
        self._waiting_for = part
        self._timer = self.loop.call_later(_TIMEOUTS[part], self._too_slow)

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._waiting_for = None

    def _too_slow(self) -> None:
        part, self._timer, self._waiting_for = self._waiting_for, None, None
        if part is None or self.transport.is_closing():
            return
        cycle = self.cycle if part == "body" else None
        if cycle is not None and cycle.response_started:
            # Answered before its body came whole (uvicorn throws the rest away as it
            # comes): a body still trickling is cut off all the same.
            self.transport.close()
            return
        if cycle is not None:
            cycle.disconnected = True  # the app's own answer, if it still makes one, is dropped
        self._refuse(
            408, "request-timeout", f"the request's {part} took more than {_TIMEOUTS[part]:g} s"
        )

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``{error, code}`` with ``status`` and close: for a request the app
        never saw whole."""
        self._stop()
        body = orjson.dumps({"error": message, "code": code})
        reason = {
            400: b"Bad Request",
            408: b"Request Timeout",
            431: b"Request Header Fields Too Large",
        }
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n%s" % (status, reason[status], len(body), body)
        )
        self.transport.close()


class _OneWrite:
    """A request cycle's transport that sends a response's head with its body, in one
    ``send``: uvicorn writes them apart, and each write to a socket is a system call (on
    loopback the sender also pays for the receiver's TCP) that cost a send-event about a
    sixth of the event loop's time. Only a head that announced its length is held, and
    only until the body's first piece, which the app sends right after it; a 100 Continue
    and a chunked response's head go out at once."""

    __slots__ = ("_cycle", "_first", "_head", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: Any) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head: bytes | None = None
        self._first = True

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
        elif self._first and self._cycle.response_started:
            self._first = False  # the response's head (a 100 Continue comes before)
            if self._cycle.chunked_encoding is False:
                self._head = data
            else:
                self._transport.write(data)
        else:
            self._transport.write(data)

    def close(self) -> None:
        head, self._head = self._head, None
        if head is not None:
            self._transport.write(head)
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()


def uvicorn_options() -> dict[str, Any]:
    """The protocol settings of ``serve`` and ``dev`` (see the module's docstring)."""
    return {
        "http": BoundedHttpToolsProtocol,
        "ws_max_size": MAX_WS_MESSAGE_BYTES,
    }
