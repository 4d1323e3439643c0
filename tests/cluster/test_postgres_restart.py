"""Two nodes under load while the PostgreSQL server restarts: requests during the
outage get a 503 ``store-unavailable`` (never a 500, never a hang), ``/readyz`` says so
too while ``/healthz`` stays 200, and the nodes carry on once it is back. The outage is
kept short: other tests share this server."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.store import postgres

from .cluster_machine import MACHINE
from .conftest import Cluster

REQUEST_LIMIT = 20.0  # no answer may take longer (a hang)


def _restart_postgres() -> None:
    """Stop the server, leave it down for 4 s, start it again: longer than /readyz waits
    for the store (3 s), while requests wait up to 5 s for a connection and may
    still succeed."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    for action in ("stop", "start"):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
            check=True,
            capture_output=True,
            timeout=60,
        )
        if action == "stop":
            time.sleep(4)
    deadline = time.monotonic() + 60
    while True:
        try:
            with psycopg.connect(postgres.ADMIN_URL, connect_timeout=2):
                return
        except psycopg.Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _wait_for_even_split(cluster: Cluster, timeout: float = 30.0) -> None:
    """Until each node holds a live lease on exactly half of the shards."""
    deadline = time.monotonic() + timeout
    while True:
        held = cluster.rows(
            "SELECT node, count(*) FROM shard_leases WHERE expires_at > now() GROUP BY node"
        )
        if sorted(n for _, n in held) == [32, 32]:
            return
        assert time.monotonic() < deadline, f"shards not split evenly again: {held}"
        time.sleep(0.2)


def test_nodes_answer_503_during_a_restart_and_carry_on(database: str, tmp_path: Path) -> None:
    if not os.path.isdir("/etc/postgresql"):
        pytest.skip("not the local Debian PostgreSQL cluster")
    cluster = Cluster(database, tmp_path, 2)
    statuses: Counter[tuple[str, int]] = Counter()
    bad: list[str] = []
    ids = itertools.count()
    phase = "before"
    probes: Counter[tuple[str, str, int, str]] = Counter()
    late: list[str] = []  # what was not a 200 once the store was back

    async def probe(client: httpx.AsyncClient) -> None:
        while phase != "done":
            for node in cluster.nodes:
                for path in ("/healthz", "/readyz"):
                    asked = phase  # /readyz waits up to 3 s for the store
                    try:
                        r = await client.get(f"{node.url}{path}")
                    except httpx.TimeoutException:
                        bad.append(f"{asked}: {path} gave no answer within {REQUEST_LIMIT} s")
                        continue
                    probes[(asked, path, r.status_code, r.json().get("code", ""))] += 1
            await asyncio.sleep(0.05)

    async def worker(client: httpx.AsyncClient, end: float, w: int) -> None:
        while time.monotonic() < end:
            node = cluster.nodes[next(ids) % 2]
            name = f"p{w}"
            started = time.monotonic()
            try:
                r = await client.post(
                    f"{node.url}/machines/{MACHINE}/i/{name}/events",
                    json={"event": {"type": "ping", "id": f"e{next(ids)}"}},
                    headers=headers,
                )
            except httpx.TimeoutException:
                bad.append(f"{phase}: no answer within {REQUEST_LIMIT} s")
                continue
            statuses[(phase, r.status_code)] += 1
            if r.status_code != 200 and phase == "after":
                late.append(f"{time.monotonic() - started:.2f} s: {r.text[:200]}")
            if r.status_code != 200 and not (
                r.status_code == 503 and r.json().get("code") == "store-unavailable"
            ):
                bad.append(f"{phase}: {r.status_code} {r.text[:200]}")
            if time.monotonic() - started > REQUEST_LIMIT:
                bad.append(f"{phase}: answered after {time.monotonic() - started:.1f} s")
            if r.status_code != 200:
                await asyncio.sleep(0.05)

    async def load() -> None:
        nonlocal phase
        async with httpx.AsyncClient(timeout=REQUEST_LIMIT) as client:
            prober = asyncio.create_task(probe(client))
            for w in range(6):
                r = await client.post(
                    f"{cluster.nodes[0].url}/machines/{MACHINE}",
                    json={"slug": f"p{w}", "context": {"name": f"p{w}"}},
                    headers=headers,
                )
                assert r.status_code == 200, r.text
            end = time.monotonic() + 1.5
            await asyncio.gather(*(worker(client, end, w) for w in range(6)))
            phase = "outage"
            restart = asyncio.create_task(asyncio.to_thread(_restart_postgres))
            while not restart.done():
                end = time.monotonic() + 0.5
                await asyncio.gather(*(worker(client, end, w) for w in range(6)))
            await restart
            # Back: within a few lease periods the shards are spread over both nodes
            # again (a node that came back first holds them all, then hands half over:
            # a request in that handover may get a 503 "retry shortly"), and every
            # instance answers 200.
            phase = "recovering"
            deadline = time.monotonic() + 30
            balanced = asyncio.create_task(asyncio.to_thread(_wait_for_even_split, cluster))
            while time.monotonic() < deadline:
                if not balanced.done():
                    end = time.monotonic() + 0.5
                    await asyncio.gather(*(worker(client, end, w) for w in range(6)))
                    continue
                await balanced
                end = time.monotonic() + 1.0
                before = Counter({s: n for (p, s), n in statuses.items() if p == "recovering"})
                await asyncio.gather(*(worker(client, end, w) for w in range(6)))
                window = Counter({s: n for (p, s), n in statuses.items() if p == "recovering"})
                window.subtract(before)
                if window[200] > 0 and all(n == 0 for s, n in window.items() if s != 200):
                    break  # a whole second of nothing but 200s: every shard has its owner
            phase = "after"
            end = time.monotonic() + 2.0
            await asyncio.gather(*(worker(client, end, w) for w in range(6)))
            phase = "done"
            await prober

    try:
        headers = cluster.headers()
        asyncio.run(load())
    finally:
        cluster.stop()
    assert not bad, bad[:5]
    assert statuses[("before", 200)] > 0, statuses
    after = {s: n for (p, s), n in statuses.items() if p == "after"}
    if set(after) != {200}:  # shown with the failure: what the nodes logged
        for i, node in enumerate(cluster.nodes):
            print(f"--- node {i}:", "".join(node.output[-60:]), sep="\n")
    assert after.get(200, 0) > 20 and set(after) == {200}, (statuses, late[:5])
    # Liveness never wavers; readiness reports the outage with the API's code, then recovers.
    assert {(path, status) for (_, path, status, _) in probes if path == "/healthz"} == {
        ("/healthz", 200)
    }, probes
    assert probes[("outage", "/readyz", 503, "store-unavailable")] > 0, probes
    ready = {(s, c) for (p, path, s, c) in probes if path == "/readyz" and p in ("before", "after")}
    assert ready == {(200, "")}, probes
    # Every accepted event is in the history once.
    counts = Counter(json.loads(e).get("id") for (e,) in cluster.rows("SELECT event FROM history"))
    assert all(n == 1 for i, n in counts.items() if i is not None)
