"""The serving process's garbage collector (server/_gc): the start-up heap is frozen and
full collections are rare once the app has started, young cycles are still collected
without anyone asking, and an app that does not own its process leaves the collector
alone. Each case runs in its own interpreter: the settings are process-wide."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import gc, json, sys, weakref
    from starlette.testclient import TestClient
    from backstate.server import Backend, create_app
    from backstate.server._gc import FULL_EVERY

    backend = Backend(sys.argv[1])
    admin = backend.ensure_admin()
    app = create_app(backend, tune_gc=sys.argv[2] == "tune")
    before = gc.get_threshold()
    with TestClient(app) as client:
        frozen, threshold = gc.get_freeze_count(), gc.get_threshold()
        served = client.get("/openapi.json").status_code

        class Node:
            pass

        freed = 0

        def count(_):
            global freed
            freed += 1

        refs = []
        for _ in range(20_000):
            a, b = Node(), Node()
            a.other, b.other = b, a  # garbage only the cycle collector frees
            refs.append(weakref.ref(a, count))
            del a, b
    print(json.dumps({
        "frozen": frozen, "before": before, "threshold": threshold,
        "full_every": FULL_EVERY, "served": served, "freed": freed,
    }))
    """
)


def _run(tmp_path: Path, mode: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "b.db"), mode],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_serving_process_freezes_its_start_up_heap(tmp_path: Path) -> None:
    r = _run(tmp_path, "tune")
    assert r["served"] == 200
    # Modules, Starlette and the runtime: tens of thousands of objects never walked again.
    assert isinstance(r["frozen"], int) and r["frozen"] > 10_000
    before, threshold = r["before"], r["threshold"]
    assert isinstance(before, list) and isinstance(threshold, list)
    assert threshold[:2] == before[:2]  # the young generations keep their defaults
    assert threshold[2] == r["full_every"] > before[2]
    # Cycles made after start-up are still collected by the young generations, unasked.
    assert isinstance(r["freed"], int) and r["freed"] > 15_000


def test_an_app_that_does_not_own_its_process_leaves_the_collector_alone(
    tmp_path: Path,
) -> None:
    r = _run(tmp_path, "library")
    assert r["served"] == 200
    assert r["frozen"] == 0
    assert r["threshold"] == r["before"]
    assert isinstance(r["freed"], int) and r["freed"] > 15_000
