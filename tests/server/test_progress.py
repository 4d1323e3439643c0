"""Streamed progress over /rt from a service in a real sandboxed `backstate serve`:
each `progress()` reaches a WebSocket subscriber as `instance-progress` before the done
event's update, and none of it is in the history."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import websockets

from .test_e2e import Server

STREAMER = Path(__file__).parent / "machines" / "streamer.py"


def test_progress_reaches_a_subscriber_before_the_done_event(tmp_path: Path) -> None:
    server = Server(tmp_path, deploy=STREAMER)
    try:
        me = server.headers({"sub": "u"})
        base = f"{server.url}/machines/streamer"
        assert httpx.post(base, json={"slug": "s"}, headers=me).is_success
        words = ["durable", "streamed", "tokens"]

        async def subscribe() -> list[dict[str, Any]]:
            uri = f"ws://127.0.0.1:{server.port}/rt?token={server.token({'sub': 'u'})}"
            async with websockets.connect(uri) as ws:
                request = {
                    "type": "subscribe-to-instance",
                    "requestId": "r1",
                    "machineName": "streamer",
                    "machineInstanceName": "s",
                }
                await ws.send(json.dumps(request))
                received = [json.loads(await asyncio.wait_for(ws.recv(), 10))]
                async with httpx.AsyncClient(timeout=30) as client:
                    event = {"event": {"type": "ask", "input": {"words": words}}}
                    sending = asyncio.ensure_future(
                        client.post(f"{base}/i/s/events", json=event, headers=me)
                    )
                    while not (
                        received[-1]["type"] == "instance-update"
                        and received[-1]["state"] == "idle"
                        and len(received) > 1
                    ):
                        received.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
                    answer = await sending
                assert answer.json()["publicContext"] == {"answer": "durable streamed tokens"}
                return received

        messages = asyncio.run(subscribe())
        kinds = [(m["type"], m.get("state")) for m in messages]
        assert kinds[0] == ("instance-update", "idle")
        assert kinds[1] == ("instance-update", "writing")
        progress = [m for m in messages if m["type"] == "instance-progress"]
        assert [m["data"] for m in progress] == [
            {"token": w, "index": i} for i, w in enumerate(words)
        ]
        assert all(
            (m["machineName"], m["machineInstanceName"], m["invokeId"])
            == ("streamer", "s", "writer")
            for m in progress
        )
        # Every piece before the update of the done event, which comes last.
        assert messages.index(progress[-1]) < len(messages) - 1
        assert messages[-1]["publicContext"] == {"answer": "durable streamed tokens"}
        events = httpx.get(f"{base}/i/s/events", headers=me).json()["transitions"]
        assert [t["event"]["type"] for t in events] == [
            "xstate.init",
            "ask",
            "xstate.done.actor.writer",
        ]
    finally:
        server.stop()
