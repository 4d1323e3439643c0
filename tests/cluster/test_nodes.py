"""Three `backstate serve` nodes on one PostgreSQL under a mixed load; one is killed
(SIGKILL) mid-load. Then every guarantee of docs/store.md's "Many nodes" is checked
against the database: accepted events applied exactly once, messages exactly once and
in order per (sender, receiver), every armed timer fired by the survivors within a few
seconds, and /rt subscribers on the survivors saw every instance's last state."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import websockets

from .cluster_machine import MACHINE
from .conftest import Cluster

INSTANCES = 24
WATCHED = 6  # instances every node's /rt socket subscribes to
WORKERS = 12
KILL_AFTER = 3.0
LOAD_SECONDS = 10.0
TIMER_MS = 1500
# A timer of the killed node's shards fires once its leases expire and are claimed.
TIMER_SLACK_MS = 10_000


class Load:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.alive = list(range(len(cluster.nodes)))
        self.accepted: list[str] = []  # event ids answered 200
        self.armed: dict[str, float] = {}
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self.updates: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        self.ids = itertools.count()
        self.killed_at = 0.0

    def base(self) -> str:
        return self.cluster.nodes[random.choice(self.alive)].url + f"/machines/{MACHINE}"

    async def post(self, client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> int:
        try:
            r = await client.post(self.base() + path, json=body, headers=self.headers)
        except httpx.TransportError:
            return 0  # the killed node
        self.statuses[r.status_code] += 1
        if r.status_code >= 500 and r.json().get("code") != "store-unavailable":
            self.errors.append(f"{r.status_code} {r.text}")
        return r.status_code

    async def create(self, client: httpx.AsyncClient, name: str) -> None:
        for _ in range(100):
            status = await self.post(client, "", {"slug": name, "context": {"name": name}})
            if status in (200, 409):
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"could not create {name}")

    async def event(self, client: httpx.AsyncClient, name: str, event: dict[str, Any]) -> int:
        event_id = f"e{next(self.ids)}"
        status = await self.post(client, f"/i/{name}/events", {"event": {**event, "id": event_id}})
        if status == 200:
            self.accepted.append(event_id)
        return status

    async def worker(self, client: httpx.AsyncClient, end: float, w: int) -> None:
        timers = itertools.count()
        while time.monotonic() < end:
            name = f"p{random.randrange(INSTANCES)}"
            roll = random.random()
            if roll < 0.45:
                await self.event(client, name, {"type": "ping"})
            elif roll < 0.9:
                peer = f"p{random.randrange(INSTANCES)}"
                if peer != name:
                    await self.event(client, name, {"type": "relay", "to": peer})
            else:
                timer = f"t{w}-{next(timers)}"
                await self.create(client, timer)
                if await self.event(client, timer, {"type": "arm"}) == 200:
                    self.armed[timer] = time.time()

    async def subscribe(self, node: int) -> None:
        uri = f"ws://127.0.0.1:{self.cluster.nodes[node].port}/rt?token={self.cluster.token()}"
        try:
            async with websockets.connect(uri) as ws:
                for i in range(WATCHED):
                    await ws.send(
                        json.dumps(
                            {
                                "type": "subscribe-to-instance",
                                "requestId": f"r{i}",
                                "machineName": MACHINE,
                                "machineInstanceName": f"p{i}",
                            }
                        )
                    )
                async for raw in ws:
                    message = json.loads(raw)
                    if message.get("type") == "instance-update":
                        self.updates[node][message["machineInstanceName"]].append(message["ts"])
        except (websockets.ConnectionClosed, OSError):
            pass

    async def run(self) -> None:
        self.headers = self.cluster.headers()
        async with httpx.AsyncClient(timeout=60) as client:
            await asyncio.gather(*(self.create(client, f"p{i}") for i in range(INSTANCES)))
            sockets = [asyncio.create_task(self.subscribe(n)) for n in self.alive]
            await asyncio.sleep(0.5)
            end = time.monotonic() + LOAD_SECONDS
            workers = [asyncio.create_task(self.worker(client, end, w)) for w in range(WORKERS)]
            await asyncio.sleep(KILL_AFTER)
            self.alive.remove(2)
            self.killed_at = time.time()
            await asyncio.to_thread(self.cluster.nodes[2].kill)
            await asyncio.gather(*workers)
            # Let messages and timers drain, then compare with what subscribers saw.
            await asyncio.to_thread(self.settle)
            await asyncio.sleep(1.0)
            for task in sockets:
                task.cancel()
            await asyncio.gather(*sockets, return_exceptions=True)

    def settle(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pending = self.cluster.rows("SELECT count(*) FROM inbox")[0][0]
            timers = self.cluster.rows("SELECT count(*) FROM timers")[0][0]
            if pending == 0 and timers == 0:
                return
            time.sleep(0.3)


def test_three_nodes_keep_every_guarantee_when_one_is_killed(database: str, tmp_path: Path) -> None:
    cluster = Cluster(database, tmp_path, 3)
    try:
        load = Load(cluster)
        asyncio.run(load.run())
        survivors_output = "".join(cluster.nodes[0].output + cluster.nodes[1].output)
    finally:
        cluster.stop()
    assert not load.errors, load.errors[:5]
    assert load.statuses[200] > 300, load.statuses  # the load really ran

    history = cluster.rows(
        "SELECT instance, seq, event, snapshot, ts FROM history ORDER BY instance, seq"
    )
    events = [(row[0], json.loads(row[2]), json.loads(row[3]), row[4]) for row in history]
    counts = Counter(e["id"] for _, e, _, _ in events if "id" in e)
    missing = [i for i in load.accepted if counts[i] == 0]
    doubled = [i for i, n in counts.items() if n > 1]
    assert not missing, f"{len(missing)} accepted events lost, e.g. {missing[:5]}"
    assert not doubled, f"events applied twice: {doubled[:5]}"

    sent: Counter[tuple[str, str]] = Counter()
    received: dict[tuple[str, str], list[int]] = defaultdict(list)
    for instance, event, _, _ in events:
        if event["type"] == "relay":
            sent[(instance, event["to"])] += 1
        elif event["type"] == "msg":
            received[(event["from"], instance)].append(event["n"])
    assert sent, "no messages were sent"
    wrong = {
        pair: received.get(pair, [])
        for pair, n in sent.items()
        if received.get(pair, []) != list(range(1, n + 1))
    }
    assert not wrong, f"messages lost, doubled or out of order: {list(wrong.items())[:3]}"

    armed = {i: ts for i, _, snap, ts in events if snap["value"] == "armed"}
    fired = {i: ts for i, _, snap, ts in events if snap["value"] == "fired"}
    assert load.armed, "no timers were armed"
    late = {
        name: fired.get(name)
        for name in load.armed
        if name not in fired or fired[name] - armed[name] > TIMER_MS + TIMER_SLACK_MS
    }
    assert not late, f"timers that did not fire in time: {late}"
    assert any(armed[n] < load.killed_at * 1000 < fired[n] for n in load.armed), (
        "no timer was due across the kill"
    )

    final = dict(cluster.rows("SELECT name, updated_at FROM instances"))
    for node in (0, 1):
        for i in range(WATCHED):
            seen = load.updates[node][f"p{i}"]
            assert seen and seen[-1] == final[f"p{i}"], (
                f"node {node}'s subscriber to p{i} saw {seen[-3:]}, last commit {final[f'p{i}']}"
            )
    assert "Traceback" not in survivors_output, survivors_output[-3000:]
