"""Idempotency-Key on create-instance and send-event, against a real sandboxed
`backstate serve` on SQLite and on PostgreSQL: repeats sequential, concurrent, and
across a SIGKILL between the commit and the answer are applied once."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from .test_e2e import Server

LEDGER = Path(__file__).parent / "machines" / "ledger.py"


def _start(tmp: Path, store_url: str | None) -> Server:
    return Server(tmp, store=store_url, deploy=LEDGER)


def _events(server: Server, me: dict[str, str], name: str) -> list[dict[str, Any]]:
    url = f"{server.url}/machines/ledger/i/{name}/events"
    return [t["event"] for t in httpx.get(url, headers=me).json()["transitions"]]


def test_repeats_are_answered_not_applied(tmp_path: Path, store_url: str | None) -> None:
    server = _start(tmp_path, store_url)
    try:
        me = server.headers({"sub": "u"})
        create = {"slug": "a", "context": {"public": {"total": 100}}}
        keyed = {**me, "idempotency-key": '"create-a"'}
        first = httpx.post(f"{server.url}/machines/ledger", json=create, headers=keyed)
        assert first.status_code == 200, first.text
        again = httpx.post(f"{server.url}/machines/ledger", json=create, headers=keyed)
        assert (again.status_code, again.json()) == (200, first.json())
        other = {"slug": "a", "context": {"public": {"total": 5}}}
        reused = httpx.post(f"{server.url}/machines/ledger", json=other, headers=keyed)
        assert (reused.status_code, reused.json()["code"]) == (422, "idempotency-key-reused")
        plain = httpx.post(f"{server.url}/machines/ledger", json=create, headers=me)
        assert (plain.status_code, plain.json()["code"]) == (409, "invalid-state")

        events = f"{server.url}/machines/ledger/i/a/events"
        add = {"event": {"type": "add", "amount": 1}}
        sent = httpx.post(events, json=add, headers={**me, "idempotency-key": "add-1"})
        assert sent.json()["publicContext"] == {"total": 101}
        again = httpx.post(events, json=add, headers={**me, "idempotency-key": "add-1"})
        assert (again.status_code, again.json()) == (200, sent.json())
        other = {"event": {"type": "add", "amount": 2}}
        reused = httpx.post(events, json=other, headers={**me, "idempotency-key": "add-1"})
        assert (reused.status_code, reused.json()["code"]) == (422, "idempotency-key-reused")
        bad = httpx.post(events, json=add, headers={**me, "idempotency-key": "x" * 300})
        assert (bad.status_code, bad.json()["code"]) == (400, "invalid-idempotency-key")

        async def concurrently() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                headers = {**me, "idempotency-key": "add-10"}
                body = {"event": {"type": "add", "amount": 10}}
                return await asyncio.gather(
                    *(client.post(events, json=body, headers=headers) for _ in range(12))
                )

        answers = asyncio.run(concurrently())
        ok = [r.json() for r in answers if r.status_code == 200]
        busy = [r.json()["code"] for r in answers if r.status_code != 200]
        assert ok and all(b["publicContext"] == {"total": 111} for b in ok)
        assert set(busy) <= {"idempotency-key-in-use"}, busy
        state = httpx.get(f"{server.url}/machines/ledger/i/a", headers=me).json()
        assert state["publicContext"] == {"total": 111}
        assert [e["type"] for e in _events(server, me, "a")] == ["xstate.init", "add", "add"]
    finally:
        server.stop()


def test_a_repeat_after_a_sigkill_between_commit_and_answer_is_not_applied_again(
    tmp_path: Path, store_url: str | None
) -> None:
    server = _start(tmp_path, store_url)
    me = server.headers({"sub": "u"})
    try:
        assert httpx.post(
            f"{server.url}/machines/ledger", json={"slug": "a"}, headers=me
        ).is_success
        events = f"{server.url}/machines/ledger/i/a/events"
        slow = {"event": {"type": "slow", "amount": 7, "seconds": 60}}
        headers = {**me, "idempotency-key": "slow-7"}
        outcome: list[Any] = []

        def request() -> None:
            try:
                outcome.append(httpx.post(events, json=slow, headers=headers, timeout=120))
            except httpx.TransportError as exc:
                outcome.append(exc)

        waiting = threading.Thread(target=request)
        waiting.start()
        # The event is committed (its state is readable) while its request still waits
        # for the service: kill the server there, before it answers.
        deadline = time.monotonic() + 20
        while httpx.get(f"{server.url}/machines/ledger/i/a", headers=me).json()["state"] != (
            "napping"
        ):
            assert time.monotonic() < deadline, "the event was never committed"
            time.sleep(0.05)
        assert not outcome
        server.kill()
        waiting.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], httpx.TransportError)
    finally:
        server.stop()

    server = _start(tmp_path, store_url)
    try:
        me = server.headers({"sub": "u"})
        retry = f"{server.url}/machines/ledger/i/a/events"
        deadline = time.monotonic() + 60
        while True:
            retried = httpx.post(retry, json=slow, headers={**headers, **me}, timeout=30)
            # On PostgreSQL the killed node's shard leases run out first (503 meanwhile).
            if retried.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert retried.status_code == 200, retried.text
        # Never answered, so the answer is the state its transition committed.
        assert (retried.json()["state"], retried.json()["publicContext"]) == (
            "napping",
            {"total": 7},
        )
        types = [e["type"] for e in _events(server, me, "a")]
        assert types.count("slow") == 1, types
        state = httpx.get(f"{server.url}/machines/ledger/i/a", headers=me).json()
        # The service that was running died with the server: its error event moved on.
        assert (state["state"], state["publicContext"]) == ("open", {"total": 7})
    finally:
        server.stop()
