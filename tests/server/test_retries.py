"""Retried services in a real sandboxed `backstate serve` (on SQLite and PostgreSQL):
a SIGKILL while the next attempt waits for its timer resumes at that attempt after the
restart; one while an attempt runs never runs that attempt again."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.store.targets import Target

from .test_e2e import Server

RETRIER = Path(__file__).parent / "machines" / "retrier.py"


def _target(tmp: Path, url: str | None) -> Target:
    return Target("postgresql", url) if url is not None else Target("sqlite", str(tmp / "b.db"))


def _wait(check: Callable[[], Any], what: str, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.05)
    return found


def _retry_state(target: Target) -> dict[str, Any] | None:
    rows = target.rows("SELECT retry FROM effects WHERE retry IS NOT NULL")
    return json.loads(rows[0][0]) if rows else None


def _attempt_lines(server: Server, me: dict[str, str]) -> list[str]:
    logs = httpx.get(f"{server.url}/logs", params={"machine": "retrier"}, headers=me).json()
    return [e["log"] for e in logs["logs"] if e["log"].startswith("attempt")]


@pytest.mark.parametrize("during", ["backoff", "attempt"])
def test_a_sigkill_resumes_a_retried_service_at_the_right_attempt(
    tmp_path: Path, store_url: str | None, during: str
) -> None:
    target = _target(tmp_path, store_url)
    server = Server(tmp_path, store=store_url, deploy=RETRIER)
    me = server.headers({"sub": "u"})
    base = f"{server.url}/machines/retrier"
    try:
        assert httpx.post(base, json={"slug": "a"}, headers=me).is_success
        # Attempt 1 fails; attempt 2 (slow when killed during an attempt) fails too
        # unless it is skipped; attempt 3 succeeds.
        sleep = {"2": 60} if during == "attempt" else {}
        event = {"event": {"type": "go", "input": {"succeed_at": 3, "sleep": sleep}}}
        sent = threading.Thread(
            target=lambda: _post_ignoring_errors(f"{base}/i/a/events", event, me), daemon=True
        )
        sent.start()
        if during == "backoff":
            _wait(
                lambda: (_retry_state(target) or {}).get("waiting") and _retry_state(target),
                "attempt 1 recorded as failed",
            )
        else:
            _wait(
                lambda: (s := _retry_state(target)) and s["attempt"] == 2 and not s["waiting"],
                "attempt 2 marked running",
            )
            time.sleep(0.5)  # it has started in the effects worker
        server.kill()
        sent.join(10)
    finally:
        server.stop()

    server = Server(tmp_path, store=store_url, deploy=RETRIER)
    try:
        me = server.headers({"sub": "u"})
        url = f"{server.url}/machines/retrier/i/a"
        state = _wait(
            lambda: (r := httpx.get(url, headers=me).json()).get("state") == "done" and r,
            "the service reaching onDone after the restart",
            seconds=60,
        )
        assert state["publicContext"] == {"out": {"attempt": 3}}
        # Each attempt ran once; the one that was running at the kill never again (its
        # log line went with the worker that was killed).
        expected = (
            ["attempt 1", "attempt 3"]
            if during == "attempt"
            else [
                "attempt 1",
                "attempt 2",
                "attempt 3",
            ]
        )
        lines = _wait(lambda: _attempt_lines(server, me) == expected or None, "the logs")
        assert lines
        events = httpx.get(f"{url}/events", headers=me).json()["transitions"]
        types = [t["event"]["type"] for t in events]
        assert types[:2] == ["xstate.init", "go"] and len(types) == 3, types
        assert types[2].startswith("xstate.done.actor.")
        assert target.rows("SELECT count(*) FROM effects")[0][0] == 0
    finally:
        server.stop()


def _post_ignoring_errors(url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
    with contextlib.suppress(httpx.TransportError):  # killed: never answered
        httpx.post(url, json=body, headers=headers, timeout=120)
