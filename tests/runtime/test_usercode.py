"""User code is untrusted input: whatever a guard, action, context factory, authorizer,
service or persistent-child name raises (``BaseException`` included) or returns (JSON
too deep to store, strings that are not Unicode) is the error of the work that ran it,
with a stable code; nothing is stored for it, and every other request meanwhile is
answered as usual. Each test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from backstate.chart import assign, setup
from backstate.runtime import (
    Backstate,
    BackstateError,
    EventRejected,
    Forbidden,
    InvalidRequest,
    persistent,
)
from tests.store.targets import Target

RAISED: dict[str, Callable[[], BaseException]] = {
    "ValueError": lambda: ValueError("boom"),
    "SystemExit": lambda: SystemExit(3),
    "KeyboardInterrupt": KeyboardInterrupt,
    "CancelledError": asyncio.CancelledError,
    "RecursionError": lambda: RecursionError("deep"),
}


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = {"a": value}
    return value


def _hostile(kind: str) -> Any:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RAISED[kind]()

    def name(input: Any) -> str:
        raise RAISED[kind]()

    return setup(
        guards={"fails": fail},
        actions={"effect": fail},
        actors={"service": fail, "child": persistent("ok", name)},
    ).create_machine(
        {
            "initial": "idle",
            "context": {"n": 0},
            "states": {
                "idle": {
                    "on": {
                        "guard": {"guard": "fails", "target": "idle"},
                        "action": {"actions": [assign({"n": lambda c, e: c["n"] + 1}), "effect"]},
                        "deep": {"actions": assign({"deep": lambda c, e: _nested(1000)})},
                        "surrogate": {"actions": assign({"s": lambda c, e: "\ud800"})},
                        "service": "calling",
                        "child": "spawning",
                    }
                },
                "calling": {
                    "invoke": {
                        "src": "service",
                        "onError": {"target": "idle", "actions": assign({"error": _error})},
                    }
                },
                "spawning": {
                    "invoke": {
                        "id": "child",
                        "src": "child",
                        "onError": {"target": "idle", "actions": assign({"error": _error})},
                    }
                },
            },
        }
    )


def _error(context: Any, event: Any) -> Any:
    return event["error"]["name"]


def _steady() -> Any:
    return setup().create_machine(
        {
            "initial": "on",
            "context": {"n": 0},
            "states": {"on": {"on": {"tick": {"actions": assign({"n": lambda c, e: c["n"] + 1})}}}},
        }
    )


async def _alongside(bs: Backstate, attack: Callable[[], Any]) -> Any:
    """Run ``attack`` while another machine's instance takes a stream of events: every
    one of those must be answered with its own new state."""
    done = asyncio.Event()

    async def steady() -> int:
        sent = 0
        while not done.is_set() or sent < 20:
            state = await asyncio.wait_for(bs.send("steady", "s", "tick"), 5)
            sent += 1
            assert state.context["n"] == sent
        return sent

    stream = asyncio.create_task(steady())
    try:
        return await asyncio.wait_for(attack(), 10)
    finally:
        done.set()
        assert await stream >= 20


@pytest.mark.parametrize("kind", sorted(RAISED))
def test_whatever_user_code_raises_is_that_works_error(db: Target, kind: str) -> None:
    async def allow_write(**kw: Any) -> bool:
        raise AssertionError("never awaited")

    def raising_authorizer(**kw: Any) -> bool:
        if kw["event"] is not None and kw["event"]["type"] == "authorize":
            raise RAISED[kind]()
        return True

    def raising_reader(**kw: Any) -> bool:
        raise RAISED[kind]()

    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy(
                "hostile", _hostile(kind), allow_write=raising_authorizer, allow_read=raising_reader
            )
            bs.deploy("steady", _steady())
            bs.deploy("ok", _steady())
            await bs.create("steady", "s")
            await bs.create("hostile", "h")

            async def attack() -> None:
                with pytest.raises(EventRejected) as rejected:
                    await bs.send("hostile", "h", "guard", auth={})
                assert rejected.value.code == "event-rejected"
                assert (kind if kind != "RecursionError" else "recursion") in rejected.value.message
                with pytest.raises(Forbidden) as refused:
                    await bs.send("hostile", "h", "authorize", auth={})
                assert refused.value.code == "authorizer-failed"
                with pytest.raises(Forbidden) as unread:
                    await bs.get("hostile", "h", auth={})
                assert unread.value.code == "authorizer-failed"
                # An action fails after its transition committed: logged, not undone.
                state = await bs.send("hostile", "h", "action")
                assert state.context["n"] == 1
                state = await bs.send("hostile", "h", "service")
                assert (state.value, state.context["error"]) == ("idle", kind)
                state = await bs.send("hostile", "h", "child")
                assert (state.value, state.context["error"]) == ("idle", "invalid-address")

            await _alongside(bs, attack)
            history = [h.event["type"] for h in await bs.history("hostile", "h")]
            assert "guard" not in history and "authorize" not in history
            assert db.rows("SELECT count(*) FROM instances WHERE machine = 'ok'") == [(0,)]
            logs = [r.message for r in await bs.logs(machine="hostile", instance="h")]
            assert any("action 'effect' raised" in m and kind in m for m in logs), logs
            # The runtime never reloaded: it stayed up for the instance it was serving.
            assert bs.processor.stats.commit_failures == 0

    asyncio.run(body())


@pytest.mark.parametrize(
    ("event", "code"), [("deep", "too-deep"), ("surrogate", "invalid-unicode")]
)
def test_a_context_that_cannot_be_stored_is_refused_and_nothing_changes(
    db: Target, event: str, code: str
) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("hostile", _hostile("ValueError"))
            bs.deploy("steady", _steady())
            await bs.create("steady", "s")
            await bs.create("hostile", "h")

            async def attack() -> None:
                with pytest.raises(InvalidRequest) as refused:
                    await bs.send("hostile", "h", event)
                assert refused.value.code == code

            await _alongside(bs, attack)
            state = await bs.get("hostile", "h")
            assert (state.seq, state.context) == (0, {"n": 0})
            history = await bs.history("hostile", "h")
            assert [h.event["type"] for h in history] == ["xstate.init"]

    asyncio.run(body())


def test_api_input_that_cannot_be_stored_is_refused(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("steady", _steady())
            await bs.create("steady", "s")
            cases: list[tuple[Any, str]] = [
                ({"type": "tick", "data": _nested(1000)}, "too-deep"),
                ({"type": "tick", "data": "\udc00"}, "invalid-unicode"),
                ({"type": "tick", "data": float("nan")}, "invalid-json"),
            ]
            for event, code in cases:
                with pytest.raises(BackstateError) as refused:
                    await bs.send("steady", "s", event)
                assert refused.value.code == code
            for context, code in [
                ({"x": _nested(1000)}, "too-deep"),
                ({"x": "\ud800"}, "invalid-unicode"),
            ]:
                with pytest.raises(BackstateError) as refused:
                    await bs.create("steady", "t", context=context)
                assert refused.value.code == code
            assert (await bs.get("steady", "s")).seq == 0

    asyncio.run(body())
