"""The client's idempotency keys, against a real `backstate serve`: a key given by the
caller, and the client's own key on its retries after an answer that never came."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backstate.client import AsyncClient, Client, Unreachable
from tests.server.test_e2e import Server

LEDGER = Path(__file__).parents[1] / "server" / "machines" / "ledger.py"


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("idempotency"), deploy=LEDGER)
    try:
        yield srv
    finally:
        srv.stop()


def _types(client: Client, name: str) -> list[str]:
    return [t.event["type"] for t in client.instances.list_transitions("ledger", name).items]


def test_a_given_key_applies_once(ledger: Server) -> None:
    with Client.from_credentials(ledger.creds_path, claims={"sub": "u"}) as client:
        client.instances.create("ledger", "given", idempotency_key="c")
        again = client.instances.create("ledger", "given", idempotency_key="c")
        event = {"type": "add", "amount": 3}
        first = client.instances.send_event("ledger", "given", event, idempotency_key="e")
        second = client.instances.send_event("ledger", "given", event, idempotency_key="e")
        assert first.public_context == second.public_context == {"total": 3}
        assert again.public_context == {"total": 0}
        assert _types(client, "given") == ["xstate.init", "add"]

    async def asynchronously() -> None:
        async with AsyncClient.from_credentials(ledger.creds_path, claims={"sub": "u"}) as client:
            for _ in range(2):
                state = await client.instances.send_event(
                    "ledger", "given", event, idempotency_key="a"
                )
                assert state.public_context == {"total": 6}

    asyncio.run(asynchronously())


def test_the_clients_retries_after_a_lost_answer_apply_once(ledger: Server) -> None:
    # The answer takes 2.5 s (a service runs); the client waits 1 s for it, then sends
    # the event again under its own key: 409 idempotency-key-in-use while the first is
    # still settling, then the first's answer.
    timeout = httpx.Timeout(1.0)
    slow = {"type": "slow", "amount": 5, "seconds": 2.5}
    with Client.from_credentials(ledger.creds_path, claims={"sub": "u"}, timeout=timeout) as client:
        client.instances.create("ledger", "retried")
        started = time.monotonic()
        state = client.instances.send_event("ledger", "retried", slow)
        assert time.monotonic() - started > 2.0
        assert (state.value, state.public_context) == ("open", {"total": 5})
        types = _types(client, "retried")
        assert types[:2] == ["xstate.init", "slow"] and len(types) == 3, types
        assert types[2].startswith("xstate.done.actor.")
    # Without retries there is no key, and the lost answer is the caller's error.
    with (
        Client.from_credentials(
            ledger.creds_path, claims={"sub": "u"}, timeout=timeout, retries=0
        ) as client,
        pytest.raises(Unreachable),
    ):
        client.instances.send_event("ledger", "retried", slow)
