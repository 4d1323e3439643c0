"""Inbox rows whose notification never came (written straight to the database, as if the
NOTIFY had been lost) are picked up by the owner's sweeps, each exactly once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from backstate.server._backend import runtime_name

from .cluster_machine import MACHINE
from .conftest import Cluster


def test_sweeps_deliver_unannounced_inbox_rows_once(database: str, tmp_path: Path) -> None:
    cluster = Cluster(database, tmp_path, 2)
    try:
        url, headers = cluster.nodes[0].url, cluster.headers()
        names = [f"swept-{i}" for i in range(4)]
        for name in names:
            r = httpx.post(f"{url}/machines/{MACHINE}", json={"slug": name}, headers=headers)
            assert r.status_code == 200, r.text
        machine = runtime_name(cluster.creds["orgId"], MACHINE)

        def pings(name: str) -> int:
            r = httpx.get(f"{url}/machines/{MACHINE}/i/{name}/admin", headers=headers)
            assert r.status_code == 200, r.text
            count: int = r.json()["context"]["pings"]
            return count

        def unannounced(n: int) -> None:
            for name in names:
                for _ in range(n):
                    cluster.rows(
                        "INSERT INTO inbox (machine, instance, event, sender, priority,"
                        " attempts, not_before) VALUES (%s, %s, %s, %s, 1, 0, 0)",
                        machine,
                        name,
                        json.dumps({"type": "ping"}),
                        f"{machine}/outside",
                    )

        # Twice: the first sweeps read the whole table, later ones only what is new (a
        # full sweep comes only every 30 s).
        for added, expected in ((2, 2), (3, 5)):
            unannounced(added)
            deadline = time.monotonic() + 15
            while any(pings(name) < expected for name in names):
                assert time.monotonic() < deadline, {n: pings(n) for n in names}
                time.sleep(0.2)
            assert cluster.rows("SELECT count(*) FROM inbox") == [(0,)]
        time.sleep(3.5)  # two more sweeps: nothing is delivered twice
        assert {name: pings(name) for name in names} == dict.fromkeys(names, 5)
    finally:
        cluster.stop()
