"""CORS against a real `backstate serve --cors-origin ...`: browsers on an allowed origin
get their preflights and the Access-Control-Allow-Origin header (the hot routes too),
other origins get neither, and /rt refuses a WebSocket from an origin it does not
serve. Without --cors-origin, only the server's own origin is served."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from backstate.cli._commands_serve import DEV_CORS_ORIGINS

from .test_e2e import Server

APP = "https://app.example.com"


@pytest.fixture
def cors(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, options=("--cors-origin", APP, "--cors-origin", "http://localhost:3000"))
    try:
        yield srv
    finally:
        srv.stop()


def preflight(server: Server, origin: str, method: str = "POST") -> httpx.Response:
    return httpx.options(
        f"{server.url}/machines/toggler/i/s1/events",
        headers={
            "origin": origin,
            "access-control-request-method": method,
            "access-control-request-headers": "authorization, content-type, x-statebacked-org-id",
        },
    )


def test_allowed_origins_get_preflights_and_the_header(cors: Server) -> None:
    me = cors.headers({"sid": "s1"})
    for origin in (APP, "http://localhost:3000"):
        answer = preflight(cors, origin)
        assert answer.status_code == 200, answer.text
        assert answer.headers["access-control-allow-origin"] == origin
        assert "POST" in answer.headers["access-control-allow-methods"]
        assert "authorization" in answer.headers["access-control-allow-headers"]
    created = httpx.post(
        f"{cors.url}/machines/toggler", json={"slug": "s1"}, headers={**me, "origin": APP}
    )
    assert created.status_code == 200 and created.headers["access-control-allow-origin"] == APP
    # The hot routes (send an event, read an instance) answer ahead of the router.
    sent = httpx.post(
        f"{cors.url}/machines/toggler/i/s1/events",
        json={"event": "toggle"},
        headers={**me, "origin": APP},
    )
    read = httpx.get(f"{cors.url}/machines/toggler/i/s1", headers={**me, "origin": APP})
    refused = httpx.get(f"{cors.url}/machines/toggler/i/nobody", headers={**me, "origin": APP})
    for response in (sent, read, refused):
        assert response.headers["access-control-allow-origin"] == APP, response.request.url


def test_other_origins_get_no_allowance(cors: Server) -> None:
    evil = "https://evil.example"
    answer = preflight(cors, evil)
    assert answer.status_code == 400 and "access-control-allow-origin" not in answer.headers
    read = httpx.get(f"{cors.url}/machines", headers={**cors.headers({}), "origin": evil})
    assert read.status_code == 200 and "access-control-allow-origin" not in read.headers


def handshake(server: Server, origin: str | None) -> int:
    async def run() -> int:
        uri = f"ws://127.0.0.1:{server.port}/rt?token={server.token({'sid': 's1'})}"
        try:
            async with websockets.connect(uri, origin=origin):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    return asyncio.run(run())


def test_rt_refuses_origins_it_does_not_serve(cors: Server) -> None:
    assert handshake(cors, APP) == 101
    assert handshake(cors, None) == 101  # not a browser
    assert handshake(cors, f"http://127.0.0.1:{cors.port}") == 101  # the server's own
    assert handshake(cors, "https://evil.example") == 403


def test_without_cors_origins_only_the_servers_own_origin_is_served(server: Server) -> None:
    answer = preflight(server, APP)
    assert "access-control-allow-origin" not in answer.headers
    read = httpx.get(f"{server.url}/machines", headers={**server.headers({}), "origin": APP})
    assert "access-control-allow-origin" not in read.headers
    assert handshake(server, APP) == 403
    assert handshake(server, None) == 101


def test_dev_serves_pages_on_this_machine_only() -> None:
    for origin in (
        "http://localhost:5173",
        "http://127.0.0.1:3000",
        "https://localhost",
        "http://[::1]:8080",
    ):
        assert re.fullmatch(DEV_CORS_ORIGINS, origin), origin
    for origin in (
        "http://localhost.evil.example",
        "https://evil.example",
        "http://127.0.0.1.nip.io",
    ):
        assert not re.fullmatch(DEV_CORS_ORIGINS, origin), origin
