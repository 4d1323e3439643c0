"""The research agent (examples/research_agent.py) end to end: a real sandboxed
`backstate serve`, the fake OpenAI-compatible model (examples/fake_openai) on a real
loopback port reached through the server's egress proxy, the key and base URL as the
org's secrets, and a real WebSocket subscriber on /rt.

It proves: an injected model failure is retried and the run goes on; an attempt past
the step timeout is stopped and retried; a model failing every attempt fails the run
once; the summary's streamed tokens reach the subscriber as `instance-progress` before
the update of the done event; the cost of the run is accumulated in its context from
the model's usage; the `status` index finds the run; and only the run's reviewer's
`approve` publishes it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from examples.fake_openai import FakeModel, answer_for, usage_for
from examples.research_agent import DEFAULT_PRICES
from tests.server.test_e2e import Server

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "examples" / "research_agent.py"
KEY = "sk-fake-research-agent"
STEP_TIMEOUT = 3.0  # the server's --step-timeout: what limits each model call's attempt
ADA = {"sub": "ada"}


@pytest.fixture(scope="module")
def model() -> Iterator[FakeModel]:
    with FakeModel(api_key=KEY, token_delay_s=0.02) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model: FakeModel) -> Iterator[Server]:
    options = ("--egress-allow", f"127.0.0.1:{model.port}", "--step-timeout", str(STEP_TIMEOUT))
    srv = Server(tmp_path_factory.mktemp("agent"), deploy=None, options=options)
    try:
        admin = srv.headers({"sub": "admin"})
        made = httpx.post(
            f"{srv.url}/machines",
            json={"slug": "research-agent", "indexes": ["status"]},
            headers=admin,
        )
        assert made.status_code == 201, made.text
        version = httpx.post(
            f"{srv.url}/machines/research-agent/v",
            json={"code": AGENT.read_text()},
            headers=admin,
            timeout=30,
        )
        assert version.status_code == 200, version.text
        for name, value in (("OPENAI_BASE_URL", model.url), ("OPENAI_API_KEY", KEY)):
            put = httpx.put(f"{srv.url}/secrets/{name}", json={"value": value}, headers=admin)
            assert put.status_code == 204, put.text
        yield srv
    finally:
        srv.stop()


@pytest.fixture(autouse=True)
def fresh_model(model: FakeModel) -> None:
    model.reset()


def _base(server: Server) -> str:
    return f"{server.url}/machines/research-agent"


def _create(server: Server, name: str, topic: str) -> dict[str, Any]:
    body = {"slug": name, "input": {"topic": topic, "reviewer": "ada"}}
    made = httpx.post(_base(server), json=body, headers=server.headers(ADA), timeout=30)
    assert made.status_code == 200, made.text
    return dict(made.json())


def _state(server: Server, name: str) -> dict[str, Any]:
    got = httpx.get(f"{_base(server)}/i/{name}", headers=server.headers(ADA), timeout=10)
    assert got.status_code == 200, got.text
    return dict(got.json())


def _wait_for(server: Server, name: str, state: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        current = _state(server, name)
        if current["state"] == state:
            return current
        assert time.monotonic() < deadline, f"{name} is still {current['state']}"
        time.sleep(0.1)


def _send(server: Server, name: str, event: Any, who: dict[str, Any] = ADA) -> httpx.Response:
    return httpx.post(
        f"{_base(server)}/i/{name}/events",
        json={"event": event},
        headers=server.headers(who),
        timeout=30,
    )


def _status_index(server: Server, status: str) -> list[str]:
    found = httpx.get(
        f"{_base(server)}/indexes/status/query",
        params={"op": "eq", "value": status},
        headers=server.headers({"sub": "admin"}),
    )
    assert found.status_code == 200, found.text
    return [hit["slug"] for hit in found.json()["instances"]]


def _expected_spend(model: FakeModel) -> tuple[dict[str, int], float]:
    """What the run's successful calls cost, from what the fake model answered."""
    tokens = {"input": 0, "output": 0}
    cost = 0.0
    for call in model.calls:
        if call["status"] != 200:
            continue
        json_mode = call["messages"][0]["content"].startswith("You plan research")
        used = usage_for(call["messages"], answer_for(call["messages"], json_mode))
        tokens["input"] += used["prompt_tokens"]
        tokens["output"] += used["completion_tokens"]
        cost += (
            used["prompt_tokens"] * DEFAULT_PRICES["input"]
            + used["completion_tokens"] * DEFAULT_PRICES["output"]
        ) / 1_000_000
    return tokens, cost


async def _revise_while_subscribed(server: Server, name: str) -> list[dict[str, Any]]:
    """Subscribe to the run over /rt, send `revise`, and collect every message up to the
    update that follows the new summary's done event."""
    uri = f"ws://127.0.0.1:{server.port}/rt?token={server.token(ADA)}"
    async with websockets.connect(uri) as ws:
        request = {
            "type": "subscribe-to-instance",
            "requestId": "r1",
            "machineName": "research-agent",
            "machineInstanceName": name,
        }
        await ws.send(json.dumps(request))
        received = [json.loads(await asyncio.wait_for(ws.recv(), 10))]
        assert received[0]["state"] == "awaitingApproval"
        sending = asyncio.ensure_future(
            asyncio.to_thread(_send, server, name, {"type": "revise", "feedback": "shorter"})
        )
        while True:
            received.append(json.loads(await asyncio.wait_for(ws.recv(), 20)))
            last = received[-1]
            if last["type"] == "instance-update" and last["state"] == "awaitingApproval":
                break
        answer = await sending
        assert answer.status_code == 200, answer.text
        return received


def test_a_run_retries_streams_costs_and_publishes_on_approval(
    server: Server, model: FakeModel
) -> None:
    model.fail(500)  # the planner's first attempt
    _create(server, "run-1", "durable execution")
    waiting = _wait_for(server, "run-1", "awaitingApproval")
    public = waiting["publicContext"]
    assert public["status"] == "awaiting-approval"
    assert public["questions"] == [
        "What is durable execution?",
        "Why does durable execution matter?",
        "What comes next for durable execution?",
    ]
    # The failed call was tried again: 500, then the plan, three research calls, a summary.
    assert [c["status"] for c in model.calls] == [500, 200, 200, 200, 200, 200]
    assert [c["stream"] for c in model.calls][-1] is True
    assert all(f and f.startswith("The fake model read") for f in public["findings"])
    assert public["summary"].startswith("The fake model read")
    assert "run-1" in _status_index(server, "awaiting-approval")

    # Revising streams a new summary: its tokens reach the subscriber as progress,
    # before the update of its done event.
    messages = asyncio.run(_revise_while_subscribed(server, "run-1"))
    kinds = [(m["type"], m.get("state")) for m in messages]
    assert ("instance-update", "summarizing") in kinds
    progress = [m for m in messages if m["type"] == "instance-progress"]
    assert progress and all(m["invokeId"] == "writer" for m in progress)
    revised = messages[-1]["publicContext"]["summary"]
    assert "".join(m["data"]["token"] for m in progress) == revised
    assert messages.index(progress[-1]) < len(messages) - 1
    assert kinds.index(("instance-update", "summarizing")) < messages.index(progress[0])
    assert "shorter" in model.calls[-1]["messages"][-1]["content"]

    # The cost: every successful call's usage, priced, accumulated in the context.
    tokens, cost = _expected_spend(model)
    public = _state(server, "run-1")["publicContext"]
    assert public["tokens"] == tokens and tokens["input"] > 0
    assert public["costUsd"] == pytest.approx(cost)

    # Only the reviewer approves; the approval publishes the run.
    refused = _send(server, "run-1", "approve", {"sub": "mallory"})
    assert refused.status_code == 403, refused.text
    approved = _send(server, "run-1", "approve")
    assert approved.status_code == 200, approved.text
    done = _wait_for(server, "run-1", "published")
    assert done["done"] and done["publicContext"]["status"] == "published"
    assert done["publicContext"]["publication"].startswith(
        f"{server.creds['orgId']}.research-agent/run-1/"
    )
    assert "run-1" in _status_index(server, "published")
    assert "run-1" not in _status_index(server, "awaiting-approval")

    # Nothing of the retry or the stream is in the history: only the events.
    history = httpx.get(f"{_base(server)}/i/run-1/events", headers=server.headers(ADA)).json()
    types = [t["event"]["type"] for t in history["transitions"]]
    assert types[:2] == ["xstate.init", "xstate.done.actor.planner"]
    assert "xstate.error.actor.planner" not in types
    assert types[-2:] == ["approve", "xstate.done.actor.publisher"]


def test_an_attempt_past_the_step_timeout_is_retried(server: Server, model: FakeModel) -> None:
    model.delay(STEP_TIMEOUT + 3)  # the planner's first attempt hangs past the timeout
    started = time.monotonic()
    _create(server, "slow-1", "timeouts")
    waiting = _wait_for(server, "slow-1", "awaitingApproval")
    assert time.monotonic() - started >= STEP_TIMEOUT
    assert waiting["publicContext"]["questions"][0] == "What is timeouts?"
    assert len(model.calls) == 6  # the hung attempt, then the run as usual


def test_a_model_failing_every_attempt_fails_the_run_once(server: Server, model: FakeModel) -> None:
    model.fail(429, times=3)  # every attempt of the planner
    _create(server, "down-1", "outages")
    failed = _wait_for(server, "down-1", "failed")
    assert failed["publicContext"]["status"] == "failed"
    assert "429" in failed["publicContext"]["error"]
    assert [c["status"] for c in model.calls] == [429, 429, 429]
    assert "down-1" in _status_index(server, "failed")
