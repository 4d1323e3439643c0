"""A persistent child created by one node in a shard another node owns: its first
service runs where it was created, and its result reaches the child's owner, even when
the owner has moved the child on meanwhile."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from backstate.runtime._cluster import shard_of
from backstate.server._backend import runtime_name

from .conftest import Cluster

MACHINES = Path(__file__).resolve().parent / "machines"


def _admin(cluster: Cluster, node: int, machine: str, name: str) -> dict[str, Any]:
    r = httpx.get(
        f"{cluster.nodes[node].url}/machines/{machine}/i/{name}/admin",
        headers=cluster.headers(),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_a_foreign_childs_first_service_result_reaches_its_owner(
    database: str, tmp_path: Path
) -> None:
    cluster = Cluster(database, tmp_path, 2)
    try:
        for slug in ("worker", "boss"):
            cluster.nodes[0].deploy(slug, MACHINES / f"{slug}.py")
        org = cluster.creds["orgId"]
        owner = dict(cluster.rows("SELECT shard, node FROM shard_leases"))
        boss_key = (runtime_name(org, "boss"), "b")
        # A job whose worker lives on the other node than its boss.
        job = next(
            j
            for j in range(1000)
            if owner[shard_of((runtime_name(org, "worker"), f"job-{j}"))]
            != owner[shard_of(boss_key)]
        )
        r = httpx.post(
            f"{cluster.nodes[0].url}/machines/boss",
            json={"slug": "b", "context": {"job": job}},
            headers=cluster.headers(),
            timeout=30,
        )
        assert r.status_code == 200, r.text
        # The worker's owner moves it on while its service runs on the boss's node.
        for node in (0, 1):
            poke = httpx.post(
                f"{cluster.nodes[node].url}/machines/worker/i/job-{job}/events",
                json={"event": "poke"},
                headers=cluster.headers(),
                timeout=30,
            )
            assert poke.status_code == 200, poke.text
        deadline = time.monotonic() + 20
        while _admin(cluster, 1, "boss", "b")["state"] != "finished":
            assert time.monotonic() < deadline, _admin(cluster, 1, "worker", f"job-{job}")
            time.sleep(0.2)
        worker = _admin(cluster, 0, "worker", f"job-{job}")
        assert worker["state"] == "done"
        assert worker["context"] == {"job": job, "pokes": 2, "result": {"ok": True}}
        assert _admin(cluster, 0, "boss", "b")["context"]["result"] == {
            "job": job,
            "pokes": 2,
            "result": {"ok": True},
        }
        # The result was taken exactly once, after both pokes.
        history = cluster.rows(
            "SELECT (event::jsonb)->>'type' FROM history WHERE machine = %s AND instance = %s ORDER BY seq",
            runtime_name(org, "worker"),
            f"job-{job}",
        )
        assert [t for (t,) in history] == [
            "xstate.init",
            "poke",
            "poke",
            "xstate.done.actor.s",
        ]
        unfinished = cluster.rows("SELECT count(*) FROM effects WHERE instance = %s", f"job-{job}")
        assert unfinished == [(0,)]
    finally:
        cluster.stop()
