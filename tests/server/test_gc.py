"""The serving process's garbage collector (server/_gc): the start-up heap is frozen and
full collections are rare once the app has started, young cycles are still collected
without anyone asking, and an app that does not own its process leaves the collector
alone; and requests, accepted or refused, leave no reference cycles, which would pile up
between those rare collections. Each case runs in its own interpreter: the settings are
process-wide."""

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


CYCLES = textwrap.dedent(
    """
    import asyncio, gc, json, sys
    from pathlib import Path
    from backstate.auth import sign_token
    from backstate.server import Backend, create_app

    async def call(app, method, path, token, body=b""):
        # One request straight through the ASGI interface: no client of its own to leave
        # cycles behind.
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
            "server": ("backstate", 80),
            "headers": [(b"content-type", b"application/json"),
                        (b"authorization", f"Bearer {token}".encode())],
        }
        sent = []

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)
        return sent[0]["status"]

    async def main():
        backend = Backend(sys.argv[1])
        admin = backend.ensure_admin()
        await backend.deploy_file(admin.org_id, Path(sys.argv[2]))
        await backend.start()
        app = create_app(backend)

        def token(sid):
            return sign_token(admin.key_id, admin.secret, {"sid": sid}, expires_in_s=600)

        toggle = b'{"event": "toggle"}'
        assert await call(app, "POST", "/machines/toggler", token("a"), b'{"slug": "a"}') == 200
        events = "/machines/toggler/i/a/events"
        cases = {
            "accepted": ("POST", events, token("a"), toggle, 200),
            "refused by the authorizer": ("POST", events, token("b"), toggle, 403),
            "bad token": ("POST", events, "nope", toggle, 401),
            "no such instance": ("GET", "/machines/toggler/i/zz", token("zz"), b"", 404),
            "no such instance (router)": ("GET", "/machines/toggler/i/zz/admin", token("a"), b"", 404),
        }
        found = {}
        for case, (method, path, tok, body, status) in cases.items():
            for _ in range(20):  # warm caches up
                await call(app, method, path, tok, body)
            gc.collect()
            gc.disable()
            for _ in range(200):
                assert await call(app, method, path, tok, body) == status, case
            found[case] = gc.collect()
            gc.enable()
        await backend.close()
        print(json.dumps(found))

    asyncio.run(main())
    """
)


def test_requests_leave_no_reference_cycles(tmp_path: Path) -> None:
    """Full collections are rare in the server, so what a request leaves for the cycle
    collector piles up: 200 requests, accepted or refused, leave (almost) nothing."""
    toggler = Path(__file__).resolve().parents[2] / "examples" / "toggler.py"
    done = subprocess.run(
        [sys.executable, "-c", CYCLES, str(tmp_path / "b.db"), str(toggler)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, int] = json.loads(done.stdout.splitlines()[-1])
    # Before handle_error cleared the frames, 200 refused events left 13,995 objects.
    assert found == dict.fromkeys(found, 0), found
