"""What a client can make a real `backstate serve` hold, over raw sockets: a head is
refused once it passes its size or header count, a client sending its head or body a
byte at a time is answered 408 and cut off, and other clients are served meanwhile
without the server's memory growing."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from backstate.server._protocol import BODY_TIMEOUT_S, HEAD_TIMEOUT_S, MAX_HEADERS

from .test_e2e import Server


def rss_kb(server: Server) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0])


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def answer(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of the response on ``sock``, read until it closes."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def drip_until_answered(sock: socket.socket, drip: bytes, seconds: float) -> None:
    """Send ``drip`` every half second until the server answers (or ``seconds`` pass)."""
    deadline = time.monotonic() + seconds
    with contextlib.suppress(OSError):
        while time.monotonic() < deadline and not select.select([sock], [], [], 0.5)[0]:
            sock.sendall(drip)


class Watch:
    """Other clients meanwhile: /healthz every 50 ms; the slowest answer, in seconds."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.slowest = 0.0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=10) as client:
            while not self._stop.wait(0.05):
                started = time.monotonic()
                try:
                    ok = client.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.failures += not ok
                self.slowest = max(self.slowest, time.monotonic() - started)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def test_a_huge_head_is_refused_at_once_and_memory_stays_flat(server: Server) -> None:
    watch = Watch(server)
    before = rss_kb(server)
    results: list[tuple[int, dict[str, Any]]] = []
    sent = [0]

    def flood(size: int) -> None:
        sock = connect(server)
        with sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ")
            chunk = b"a" * 1_000_000
            with contextlib.suppress(OSError):
                while sent[0] < size:
                    sock.sendall(chunk)
                    sent[0] += len(chunk)
            results.append(answer(sock))

    started = time.monotonic()
    flooders = [threading.Thread(target=flood, args=(200_000_000,)) for _ in range(3)]
    for thread in flooders:
        thread.start()
    for thread in flooders:
        thread.join(30)
    elapsed = time.monotonic() - started
    watch.stop()
    assert [status for status, _ in results] == [431] * 3, results
    assert results[0][1]["code"] == "head-too-large"
    assert sent[0] < 50_000_000 and elapsed < 5, (sent[0], elapsed)  # cut off, not read
    assert rss_kb(server) - before < 20_000, (before, rss_kb(server))
    assert watch.failures == 0 and watch.slowest < 1.0, watch.slowest


def test_too_many_headers_are_refused(server: Server) -> None:
    headers = {f"x-h{i}": "v" for i in range(MAX_HEADERS)}
    refused = httpx.get(f"{server.url}/healthz", headers=headers)
    assert (refused.status_code, refused.json()["code"]) == (431, "too-many-headers")
    fine = httpx.get(f"{server.url}/healthz", headers=dict(list(headers.items())[:50]))
    assert fine.status_code == 200


def test_clients_that_trickle_are_answered_408_and_cut_off(server: Server) -> None:
    me = server.headers({"sid": "slow"})
    assert httpx.post(f"{server.url}/machines/toggler", json={"slug": "slow"}, headers=me)
    auth = f"authorization: {me['authorization']}\r\n".encode()
    outcomes: dict[str, tuple[float, int, str]] = {}

    def run(label: str, opening: bytes, drip: bytes) -> Callable[[], None]:
        def go() -> None:
            sock = connect(server)
            started = time.monotonic()
            with sock:
                sock.sendall(opening)
                drip_until_answered(sock, drip, BODY_TIMEOUT_S + 10)
                status, body = answer(sock)
            outcomes[label] = (time.monotonic() - started, status, body["code"])

        return go

    cases = {
        "silent": (b"", b""),
        "head": (b"GET /healthz HTTP/1.1\r\nhost: x\r\n", b"x-a: b\r\n"),
        "body": (
            b"POST /machines/toggler/i/slow/events HTTP/1.1\r\nhost: x\r\n"
            + auth
            + b'content-type: application/json\r\ncontent-length: 1000\r\n\r\n{"event": "toggle", "x": "',
            b"a",
        ),
    }
    watch = Watch(server)
    threads = [threading.Thread(target=run(k, *v)) for k, v in cases.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BODY_TIMEOUT_S + 20)
    watch.stop()
    for label in ("silent", "head"):
        elapsed, status, code = outcomes[label]
        assert (status, code) == (408, "request-timeout"), label
        assert HEAD_TIMEOUT_S - 0.5 < elapsed < HEAD_TIMEOUT_S + 2, (label, elapsed)
    elapsed, status, code = outcomes["body"]
    assert (status, code) == (408, "request-timeout")
    assert BODY_TIMEOUT_S - 0.5 < elapsed < BODY_TIMEOUT_S + 2, elapsed
    assert watch.failures == 0 and watch.slowest < 1.0, watch.slowest
    # The event never arrived whole, so it was not sent.
    state = httpx.get(f"{server.url}/machines/toggler/i/slow", headers=me).json()
    assert state["state"] == "on"


def test_kept_alive_connections_get_a_deadline_per_request(server: Server) -> None:
    sock = connect(server)
    with sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        drip_until_answered(sock, b"x-a: b\r\n", HEAD_TIMEOUT_S * 2)
        status, body = answer(sock)
    assert (status, body["code"]) == (408, "request-timeout")
    assert time.monotonic() - started < HEAD_TIMEOUT_S + 2


def test_a_client_that_expects_100_continue_gets_it_before_sending_its_body(
    server: Server,
) -> None:
    me = {"authorization": f"Bearer {server.token({'sid': 'patient'})}"}
    assert httpx.post(f"{server.url}/machines/toggler", json={"slug": "patient"}, headers=me)
    body = b'{"event": "toggle"}'
    sock = connect(server)
    with sock:
        sock.sendall(
            b"POST /machines/toggler/i/patient/events HTTP/1.1\r\nhost: x\r\n"
            b"authorization: " + me["authorization"].encode() + b"\r\n"
            b"content-type: application/json\r\nexpect: 100-continue\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        )
        # Not held back to go out with the response (which needs the body first).
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        status, answered = answer(sock)
    assert (status, answered["state"]) == (200, "off")
