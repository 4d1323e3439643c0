"""Retry policies on invoked services, on SQLite and PostgreSQL (the ``db`` fixture),
with a simulated clock: attempts, backoff on durable timers, ``current_effect().attempt``,
one ``onError`` after the last attempt, and restarts between and during attempts. The
SIGKILL of a real sandboxed server is in tests/server/test_retries.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from backstate.chart import DefinitionError, assign, setup
from backstate.runtime import (
    Backstate,
    InstanceState,
    SimulatedClock,
    Unavailable,
    current_effect,
)
from tests.store.targets import Target

from .test_backstate import run

CALLS: list[tuple[str, int, Any]] = []  # (effect id, attempt, input) of every attempt
FAIL_UNTIL = {"attempt": 0}
BLOCK = {"attempt": 0}  # an attempt that waits forever (to be interrupted)


async def flaky(input: Any) -> Any:
    effect = current_effect()
    assert effect is not None
    CALLS.append((str(effect), effect.attempt, input))
    if effect.attempt == BLOCK["attempt"]:
        await asyncio.Event().wait()
    if effect.attempt <= FAIL_UNTIL["attempt"]:
        raise RuntimeError(f"attempt {effect.attempt} failed")
    return {"attempt": effect.attempt}


def machine(retry: dict[str, Any] | None, defaults: dict[str, Any] | None = None) -> Any:
    invoke: dict[str, Any] = {
        "id": "call",
        "src": "flaky",
        "input": lambda c, e: e.get("q"),
        "onDone": {"target": "done", "actions": assign({"out": lambda c, e: e["output"]})},
        "onError": {"target": "failed", "actions": assign({"error": lambda c, e: e["error"]})},
    }
    if retry is not None:
        invoke["retry"] = retry
    config: dict[str, Any] = {
        "initial": "idle",
        "context": {},
        "states": {
            "idle": {"on": {"go": "calling"}},
            "calling": {"invoke": invoke, "on": {"cancel": "idle"}},
            "done": {"on": {"go": "calling"}},
            "failed": {"on": {"go": "calling"}},
        },
    }
    if defaults is not None:
        config["invokeDefaults"] = defaults
    return setup(actors={"flaky": flaky}).create_machine(config)


POLICY = {"attempts": 3, "initial_ms": 1000, "factor": 2, "max_ms": 1500}


async def _until(bs: Backstate, clock: SimulatedClock, value: str, step_ms: int = 250) -> Any:
    """Advance the clock until the instance is in ``value``."""
    for _ in range(200):
        state = await bs.get("m", "i")
        if state.value == value:
            return state
        clock.advance(step_ms)
        await asyncio.sleep(0.01)
    raise AssertionError(f"never reached {value}: {(await bs.get('m', 'i')).value}")


async def _attempts(expected: list[int]) -> None:
    """Wait (real time) until the attempts made so far are ``expected``, then a little
    longer to see that no other starts."""
    for _ in range(300):
        if [c[1] for c in CALLS] == expected:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert [c[1] for c in CALLS] == expected


def _reset(fail_until: int, block: int = 0) -> None:
    CALLS.clear()
    FAIL_UNTIL["attempt"] = fail_until
    BLOCK["attempt"] = block


def test_a_service_failing_twice_reaches_on_done_on_its_third_attempt(db: Target) -> None:
    _reset(fail_until=2)
    clock = SimulatedClock()

    async def body() -> None:
        async with Backstate(db.open(), clock=clock) as bs:
            bs.deploy("m", machine(POLICY))
            await bs.create("m", "i")
            sent = asyncio.ensure_future(bs.send("m", "i", {"type": "go", "q": 7}))
            await _attempts([1])  # the second waits for its timer
            assert not sent.done()  # a retrying service keeps its instance unsettled
            clock.advance(999)
            await _attempts([1])
            clock.advance(1)
            await _attempts([1, 2])
            clock.advance(1500)  # 2000 capped by max_ms
            state: InstanceState = await asyncio.wait_for(sent, 5)
            assert (state.value, state.context["out"]) == ("done", {"attempt": 3})
            assert CALLS == [("m/i/1/0", 1, 7), ("m/i/1/0", 2, 7), ("m/i/1/0", 3, 7)]
            events = [row.event["type"] for row in await bs.history("m", "i")]
            assert events == ["xstate.init", "go", "xstate.done.actor.call"]
        assert db.rows("SELECT count(*) FROM effects") == [(0,)]
        assert db.rows("SELECT count(*) FROM timers") == [(0,)]

    run(body)


def test_on_error_fires_once_after_the_last_attempt_with_every_error(db: Target) -> None:
    _reset(fail_until=99)
    clock = SimulatedClock()

    async def body() -> None:
        async with Backstate(db.open(), clock=clock) as bs:
            bs.deploy("m", machine(None, defaults={"retry": {**POLICY, "attempts": 3}}))
            await bs.create("m", "i")
            sent = asyncio.ensure_future(bs.send("m", "i", "go"))
            state = await _until(bs, clock, "failed")
            assert (await sent).value == "failed"
            attempts = state.context["error"]["attempts"]
            assert [(a["attempt"], a["message"]) for a in attempts] == [
                (1, "attempt 1 failed"),
                (2, "attempt 2 failed"),
                (3, "attempt 3 failed"),
            ]
            assert state.context["error"]["message"] == "attempt 3 failed"
            assert [c[1] for c in CALLS] == [1, 2, 3]
            events = [row.event["type"] for row in await bs.history("m", "i")]
            assert events == ["xstate.init", "go", "xstate.error.actor.call"]

    run(body)


def test_leaving_the_state_during_the_backoff_stops_the_retries(db: Target) -> None:
    _reset(fail_until=99)
    clock = SimulatedClock()

    async def body() -> None:
        async with Backstate(db.open(), clock=clock) as bs:
            bs.deploy("m", machine(POLICY))
            await bs.create("m", "i")
            sent = asyncio.ensure_future(bs.send("m", "i", "go"))
            await _attempts([1])
            assert (await bs.send("m", "i", "cancel")).value == "idle"
            assert (await sent).value == "idle"
            clock.advance(5000)
            await _attempts([1])
            assert (await bs.get("m", "i")).value == "idle"
        assert db.rows("SELECT count(*) FROM effects") == [(0,)]

    run(body)


@pytest.mark.parametrize("during", ["backoff", "attempt"])
def test_a_restart_resumes_at_the_right_attempt(db: Target, during: str) -> None:
    # Stopped while attempt 2 waits for its timer, it resumes with attempt 2; stopped
    # while attempt 2 runs, that attempt is never run again: attempt 3 is next.
    _reset(fail_until=1, block=2 if during == "attempt" else 0)
    clock = SimulatedClock()

    async def body() -> None:
        async with Backstate(db.open(), clock=clock) as bs:
            bs.deploy("m", machine({**POLICY, "attempts": 4}))
            await bs.create("m", "i")
            sent = asyncio.ensure_future(bs.send("m", "i", "go"))
            await _attempts([1])
            if during == "attempt":
                clock.advance(1000)
                await _attempts([1, 2])
        with pytest.raises(Unavailable):
            await sent  # its caller was told the runtime stopped
        BLOCK["attempt"] = 0
        async with Backstate(db.open(), clock=clock) as bs:
            bs.deploy("m", machine({**POLICY, "attempts": 4}))
            state = await _until(bs, clock, "done")
            expected = 3 if during == "attempt" else 2
            assert state.context["out"] == {"attempt": expected}
            assert [c[1] for c in CALLS] == [1, 2, 3] if during == "attempt" else [1, 2]
            assert len({c[0] for c in CALLS}) == 1

    run(body)


def test_a_restart_after_the_last_attempt_was_interrupted_fires_on_error(db: Target) -> None:
    _reset(fail_until=1, block=2)
    clock = SimulatedClock()

    async def body() -> None:
        async with Backstate(db.open(), clock=clock) as bs:
            bs.deploy("m", machine({**POLICY, "attempts": 2}))
            await bs.create("m", "i")
            sent = asyncio.ensure_future(bs.send("m", "i", "go"))
            await _attempts([1])
            clock.advance(1000)
            await _attempts([1, 2])
        with pytest.raises(Unavailable):
            await sent
        async with Backstate(db.open(), clock=clock) as bs:
            bs.deploy("m", machine({**POLICY, "attempts": 2}))
            state = await _until(bs, clock, "failed")
            error = state.context["error"]
            assert error["name"] == "Interrupted"
            assert [(a["attempt"], a["name"]) for a in error["attempts"]] == [
                (1, "RuntimeError"),
                (2, "Interrupted"),
            ]
            assert [c[1] for c in CALLS] == [1, 2]

    run(body)


def test_a_per_attempt_timeout_counts_as_a_failed_attempt(db: Target) -> None:
    _reset(fail_until=0, block=1)
    clock = SimulatedClock()

    async def body() -> None:
        async with Backstate(db.open(), clock=clock) as bs:
            bs.deploy("m", machine(None, defaults={"retry": POLICY, "timeout_ms": 100}))
            await bs.create("m", "i")
            sent = asyncio.ensure_future(bs.send("m", "i", "go"))
            await asyncio.sleep(0.3)  # attempt 1 times out after 0.1 s (real time)
            state = await _until(bs, clock, "done")
            assert (await sent).value == "done"
            assert state.context["out"] == {"attempt": 2}

    run(body)


@pytest.mark.parametrize(
    "retry",
    [
        {"attempts": 0},
        {"attempts": 2, "factor": 0.5},
        {"attempts": "3"},
        {"initial_ms": 10},
        {"attempts": 2, "jitter": 2},
        {"attempts": 2, "backoff": 1},
        "often",
    ],
)
def test_bad_policies_are_refused_at_definition(retry: Any) -> None:
    chart = setup(actors={"x": flaky})
    with pytest.raises(DefinitionError) as refused:
        chart.create_machine(
            {"initial": "a", "states": {"a": {"invoke": {"src": "x", "retry": retry}}}}
        )
    assert refused.value.code == "invalid-config"
    with pytest.raises(DefinitionError) as refused:
        chart.create_machine(
            {
                "initial": "a",
                "invokeDefaults": {"timeout_ms": 0},
                "states": {"a": {"invoke": {"src": "x"}}},
            }
        )
    assert refused.value.code == "invalid-config"
