"""Multiplayer tic-tac-toe end to end: two anonymous players over HTTP, each watching
the game over /rt; creation settles after the hashing service; turns are enforced."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets

from .test_e2e import Server

MOVES_X_WINS = [(0, 0, "p1"), (1, 1, "p2"), (0, 1, "p1"), (2, 2, "p2"), (0, 2, "p1")]


def test_two_players_over_http_and_realtime(server: Server) -> None:
    base = server.deploy("tic-tac-toe", "tic_tac_toe.py")
    p1, p2 = server.headers({"sid": "p1"}), server.headers({"sid": "p2"})
    players = {"p1": p1, "p2": p2}

    assert (
        httpx.post(
            base, json={"slug": "g1", "context": {"player1Id": "p2"}}, headers=p1
        ).status_code
        == 403
    )
    created = httpx.post(base, json={"slug": "g1", "context": {"player1Id": "p1"}}, headers=p1)
    assert created.status_code == 200, created.text
    assert created.json()["state"] == "Awaiting player 2"  # settled after hashing player 1's id
    assert created.json()["publicContext"]["hashedPlayer1Id"]

    def send(who: str, event: Any) -> httpx.Response:
        return httpx.post(f"{base}/i/g1/events", json={"event": event}, headers=players[who])

    assert send("p1", {"type": "join", "playerId": "p1"}).json()["state"] == "Awaiting player 2"
    assert send("p1", {"type": "join", "playerId": "p2"}).status_code == 403  # not p1's id to claim
    assert send("p2", {"type": "join", "playerId": "p2"}).json()["state"] == {
        "Playing": "Awaiting x move"
    }

    async def play() -> list[Any]:
        uri = f"ws://127.0.0.1:{server.port}/rt?token={server.token({'sid': 'p2'})}"
        async with websockets.connect(uri) as ws:
            await ws.send(
                json.dumps(
                    {
                        "type": "subscribe-to-instance",
                        "requestId": "1",
                        "machineName": "tic-tac-toe",
                        "machineInstanceName": "g1",
                    }
                )
            )
            seen = [json.loads(await asyncio.wait_for(ws.recv(), 5))]
            async with httpx.AsyncClient() as client:
                for row, column, who in MOVES_X_WINS:
                    out_of_turn = "p2" if who == "p1" else "p1"
                    refused = await client.post(
                        f"{base}/i/g1/events",
                        json={"event": {"type": "move", "row": 2, "column": 0}},
                        headers=players[out_of_turn],
                    )
                    assert refused.status_code == 403
                    moved = await client.post(
                        f"{base}/i/g1/events",
                        json={"event": {"type": "move", "row": row, "column": column}},
                        headers=players[who],
                    )
                    assert moved.status_code == 200, moved.text
                    seen.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            return seen

    seen = asyncio.run(play())
    assert seen[0]["state"] == {"Playing": "Awaiting x move"}
    final = seen[-1]
    assert final["state"] == "Game over"
    assert final["publicContext"]["winners"] == ["player1"]
    assert final["publicContext"]["board"][0] == ["x", "x", "x"]
    again = send("p2", "Play again").json()
    assert again["state"] == {"Playing": "Awaiting x move"}
    assert (again["publicContext"]["player1Mark"], again["publicContext"]["player2Mark"]) == (
        "o",
        "x",
    )
    assert send("p1", {"type": "move", "row": 0, "column": 0}).status_code == 403  # p2 holds x now
    assert send("p2", {"type": "move", "row": 9, "column": 0}).json()["state"] == {
        "Playing": "Awaiting x move"
    }
    stranger = server.headers({"sid": "p3"})
    assert httpx.get(f"{base}/i/g1", headers=stranger).status_code == 403
