"""A version or migration uploaded through one node runs on every node: nodes follow
the control store, so an instance owned elsewhere starts on the new current version."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.server.test_e2e import Server
from tests.store.postgres import rows as cluster_rows

from .conftest import HERE, Cluster

MACHINE = (HERE / "cluster_machine.py").read_text()


def test_a_version_uploaded_on_one_node_runs_on_the_others(database: str, tmp_path: Path) -> None:
    cluster = Cluster(database, tmp_path, 2)
    try:
        first, second = cluster.nodes
        admin = cluster.headers()
        machines = httpx.post(f"{first.url}/machines", json={"slug": "late"}, headers=admin)
        assert machines.status_code == 201, machines.text
        version = httpx.post(f"{first.url}/machines/late/v", json={"code": MACHINE}, headers=admin)
        assert version.status_code == 200, version.text
        version_id = version.json()["machineVersionId"]
        # Instances in every shard, created through the second node: those it owns run
        # there, the others are forwarded to the first node; all must find the version.
        deadline = time.monotonic() + 10
        created = 0
        while created < 20:
            r = httpx.post(
                f"{second.url}/machines/late", json={"slug": f"i{created}"}, headers=admin
            )
            if r.status_code == 409 and time.monotonic() < deadline:  # "no version yet"
                time.sleep(0.2)
                continue
            assert r.status_code == 200, r.text
            created += 1
        rows = cluster.rows("SELECT DISTINCT version FROM instances WHERE machine LIKE ?", "%.late")
        assert rows == [(version_id,)]
    finally:
        cluster.stop()


def test_nodes_started_together_with_the_same_deploy_make_one_version(
    database: str, tmp_path: Path
) -> None:
    """As a container orchestrator starts replicas: the same command line, at once. (The
    start-ups rarely overlap closely enough to race without the lock; the lock itself is
    tested in tests/store/test_control.py.)"""
    nodes = [Server(tmp_path, store=database, deploy=None)]  # the org and its credentials
    try:
        with ThreadPoolExecutor(4) as pool:
            starting = [
                pool.submit(Server, tmp_path, store=database, start_timeout=60) for _ in range(4)
            ]
            for future in starting:
                nodes.append(future.result())
        versions = cluster_rows(database, "SELECT count(*) FROM versions")
        assert versions == [(1,)]
        deadline = time.monotonic() + 30
        query = "SELECT count(DISTINCT node), count(*) FROM shard_leases WHERE expires_at > now()"
        while cluster_rows(database, query) != [(len(nodes), 64)]:
            assert time.monotonic() < deadline, "shards not spread over every node"
            time.sleep(0.2)
        for i, node in enumerate(nodes):
            session = node.headers({"sid": f"n{i}"})  # the toggler's authorizer
            # While shards still move between nodes, a request may get the documented
            # 503 "retry shortly"; every node must serve it within a few seconds.
            retry_until = time.monotonic() + 15
            while True:
                r = httpx.post(
                    f"{node.url}/machines/toggler", json={"slug": f"n{i}"}, headers=session
                )
                if r.status_code != 503 or time.monotonic() > retry_until:
                    break
                time.sleep(0.5)
            assert r.status_code == 200, r.text
    finally:
        for node in nodes:
            node.stop()
