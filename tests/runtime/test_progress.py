"""Streamed progress in the runtime (trusted code): subscribers that ask for it get each
``progress()`` of a running service, in order, before the done event's state; others
and the history never see it; ``progress()`` outside a service is an error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from backstate.chart import assign, setup
from backstate.runtime import Backstate, EventRejected, InstanceState, Progress, progress

from .test_backstate import run


async def stream(input: Any) -> Any:
    for piece in input:
        progress({"piece": piece})
        await asyncio.sleep(0.01)
    return len(input)


def blocking(input: Any) -> Any:  # in a thread: progress crosses to the event loop
    progress("from a thread")
    return "ok"


def bad(input: Any) -> Any:
    progress({"not json": object()})


def _guard(context: Any, event: Any) -> bool:
    progress("from a guard")
    return True


MACHINE = setup(
    actors={"stream": stream, "blocking": blocking, "bad": bad}, guards={"talks": _guard}
).create_machine(
    {
        "initial": "idle",
        "context": {},
        "states": {
            "idle": {
                "on": {
                    "go": "streaming",
                    "thread": "threaded",
                    "bad": "failing",
                    "guarded": {"guard": "talks", "target": "idle"},
                }
            },
            "streaming": {
                "invoke": {
                    "id": "s",
                    "src": "stream",
                    "input": lambda c, e: e["pieces"],
                    "onDone": {
                        "target": "idle",
                        "actions": assign({"n": lambda c, e: e["output"]}),
                    },
                }
            },
            "threaded": {"invoke": {"id": "t", "src": "blocking", "onDone": "idle"}},
            "failing": {
                "invoke": {
                    "id": "b",
                    "src": "bad",
                    "onError": {
                        "target": "idle",
                        "actions": assign({"error": lambda c, e: e["error"]["name"]}),
                    },
                }
            },
        },
    }
)


def test_progress_reaches_subscribers_that_ask_and_is_never_state(tmp_path: Any) -> None:
    async def body() -> None:
        async with Backstate(tmp_path / "p.db") as bs:
            bs.deploy("m", MACHINE)
            await bs.create("m", "i")
            everything: list[Any] = []
            states: list[Any] = []

            async def follow(into: list[Any], with_progress: bool) -> None:
                async for item in bs.subscribe("m", "i", progress=with_progress):
                    into.append(item)
                    if isinstance(item, InstanceState) and item.context.get("n") == 3:
                        return

            followers = [
                asyncio.ensure_future(follow(everything, True)),
                asyncio.ensure_future(follow(states, False)),
            ]
            await asyncio.sleep(0.01)
            state = await bs.send("m", "i", {"type": "go", "pieces": ["a", "b", "c"]})
            assert state.context == {"n": 3}
            await asyncio.wait_for(asyncio.gather(*followers), 5)
            pieces = [i for i in everything if isinstance(i, Progress)]
            assert [(p.invoke_id, p.data) for p in pieces] == [
                ("s", {"piece": "a"}),
                ("s", {"piece": "b"}),
                ("s", {"piece": "c"}),
            ]
            assert everything.index(pieces[-1]) < len(everything) - 1  # before the done state
            assert all(isinstance(i, InstanceState) for i in states)
            assert [s.value for s in states] == ["idle", "streaming", "idle"]
            history = [r.event["type"] for r in await bs.history("m", "i")]
            assert history == ["xstate.init", "go", "xstate.done.actor.s"]

            seen: list[Any] = []

            async def one() -> None:
                async for item in bs.subscribe("m", "i", progress=True):
                    if isinstance(item, Progress):
                        seen.append(item.data)
                        return

            follower = asyncio.ensure_future(one())
            await asyncio.sleep(0.01)
            assert (await bs.send("m", "i", "thread")).value == "idle"
            await asyncio.wait_for(follower, 5)
            assert seen == ["from a thread"]

            # Data that is no JSON is the service's own error; outside a service, too.
            assert (await bs.send("m", "i", "bad")).context["error"] == "InvalidRequest"
            with pytest.raises(EventRejected):
                await bs.send("m", "i", "guarded")
            with pytest.raises(RuntimeError):
                progress("from nowhere")

    run(body)
