"""/rt keeps checking access while a subscription lives, against a real server: an update
the machine's allow_read refuses is not sent, and a token that expires or whose key is
deleted loses its subscriptions; each ends with the protocol's error message."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from backstate.auth import sign_token

from .test_e2e import Server

ROOM = Path(__file__).with_name("room.py")


@pytest.fixture
def room(server: Server) -> str:
    base = server.deploy("room", ROOM)
    created = httpx.post(base, json={"slug": "r"}, headers=server.headers({"sid": "alice"}))
    assert created.status_code == 200, created.text
    return base


def send(server: Server, base: str, event: Any) -> None:
    r = httpx.post(f"{base}/i/r/events", json={"event": event}, headers=server.headers({}))
    assert r.status_code == 200, r.text


async def subscribe(server: Server, token: str, request_id: str = "q1") -> Any:
    ws = await websockets.connect(f"ws://127.0.0.1:{server.port}/rt?token={token}")
    message = {"machineName": "room", "machineInstanceName": "r", "requestId": request_id}
    await ws.send(json.dumps({"type": "subscribe-to-instance", **message}))
    first = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert first["type"] == "instance-update" and first["publicContext"] == {"pings": 0}
    return ws


async def next_message(ws: Any, timeout: float = 5) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), timeout)))


async def nothing_more(ws: Any) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), 0.5)


def test_an_update_allow_read_refuses_ends_the_subscription(server: Server, room: str) -> None:
    async def run() -> None:
        bob = await subscribe(server, server.token({"sid": "bob"}))
        alice = await subscribe(server, server.token({"sid": "alice"}))
        await asyncio.to_thread(send, server, room, "ping")
        for ws in (bob, alice):
            assert (await next_message(ws))["publicContext"] == {"pings": 1}
        await asyncio.to_thread(send, server, room, {"type": "kick", "who": "bob"})
        assert await next_message(bob) == {
            "type": "error",
            "requestId": "q1",
            "status": 403,
            "code": "rejected-by-machine-authorizer",
        }
        await asyncio.to_thread(send, server, room, "ping")
        await nothing_more(bob)  # the subscription is over: pings no longer reach bob
        updates = [await next_message(alice) for _ in range(2)]
        assert [u["publicContext"] for u in updates] == [{"pings": 1}, {"pings": 2}]
        # Subscribing again is refused like any read.
        await bob.send(
            json.dumps(
                {
                    "type": "subscribe-to-instance",
                    "requestId": "q2",
                    "machineName": "room",
                    "machineInstanceName": "r",
                }
            )
        )
        assert (await next_message(bob))["code"] == "rejected-by-machine-authorizer"
        await bob.close()
        await alice.close()

    asyncio.run(run())


def test_a_deleted_key_ends_its_subscriptions(server: Server, room: str) -> None:
    admin = server.headers({})
    made = httpx.post(
        f"{server.url}/keys", json={"name": "tmp", "use": "production"}, headers=admin
    )
    key_id, secret = made.json()["id"], made.json()["key"]

    async def run() -> None:
        ws = await subscribe(server, sign_token(key_id, secret, {"sid": "alice"}, expires_in_s=600))
        deleted = await asyncio.to_thread(
            httpx.delete, f"{server.url}/keys/{key_id}", headers=admin
        )
        assert deleted.status_code == 204
        started = time.monotonic()
        error = await next_message(ws)
        assert (error["type"], error["status"], error["code"]) == ("error", 401, "unknown-key")
        assert time.monotonic() - started < 4
        await asyncio.to_thread(send, server, room, "ping")
        await nothing_more(ws)
        await ws.close()

    asyncio.run(run())


def test_an_expired_token_ends_its_subscriptions(server: Server, room: str) -> None:
    async def run() -> None:
        token = server.token({"sid": "alice"}, ttl=1)
        ws = await subscribe(server, token)
        await asyncio.to_thread(send, server, room, "ping")
        assert (await next_message(ws))["publicContext"] == {"pings": 1}
        # Verification allows 5 s of clock skew past exp; so does /rt.
        error = await next_message(ws, timeout=10)
        assert (error["type"], error["status"], error["code"]) == ("error", 401, "token-expired")
        await asyncio.to_thread(send, server, room, "ping")
        await nothing_more(ws)
        await ws.close()

    asyncio.run(run())


def test_bad_messages_get_errors_and_the_socket_keeps_serving(server: Server, room: str) -> None:
    async def run() -> None:
        ws = await subscribe(server, server.token({"sid": "alice"}))
        for text, code in (
            ("{", "invalid-json"),
            ('{"type": "subscribe-to-instance", "x": ' + "[" * 5000 + "]" * 5000 + "}", "too-deep"),
            ('{"type": "subscribe-to-instance", "machineName": "\\ud800"}', "invalid-unicode"),
            ('{"type": "nonsense", "requestId": "z"}', "invalid-parameter"),
            ("[1, 2]", "invalid-parameter"),
            (
                '{"type": "subscribe-to-instance", "requestId": "t",'
                ' "machineName": ["x"], "machineInstanceName": 5}',
                "invalid-parameter",
            ),
        ):
            await ws.send(text)
            error = await next_message(ws)
            assert (error["type"], error["status"], error["code"]) == ("error", 400, code), text
        await asyncio.to_thread(send, server, room, "ping")
        assert (await next_message(ws))["publicContext"] == {"pings": 1}
        await ws.close()

    asyncio.run(run())
