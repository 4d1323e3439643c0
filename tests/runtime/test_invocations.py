"""Invocations in the durable runtime follow XState v5 and SCXML: a finished instance's
delayed events are cancelled, and a service's result that was already queued when its
invoking state was left is still delivered (only a newer invocation with the same id
drops it). Each test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from backstate.chart import assign, send_parent, setup
from backstate.runtime import Backstate, SimulatedClock, persistent
from backstate.store import CommitResult, WriteBatch
from tests.store.targets import Target


def test_a_finished_childs_delayed_sends_never_reach_its_parent(db: Target) -> None:
    clock = SimulatedClock(0)
    child = setup().create_machine(
        {
            "initial": "working",
            "states": {
                "working": {
                    # A delayed send and the final state in one macrostep.
                    "entry": send_parent({"type": "late"}, delay=100),
                    "always": "done",
                },
                "done": {"type": "final"},
            },
        }
    )
    parent = setup(actors={"child": persistent("child")}).create_machine(
        {
            "initial": "waiting",
            "context": {"late": 0},
            "states": {
                "waiting": {
                    "invoke": {"id": "kid", "src": "child", "onDone": "finished"},
                },
                "finished": {
                    "on": {"late": {"actions": assign({"late": lambda c, e: c["late"] + 1})}}
                },
            },
        }
    )

    async def body() -> None:
        async with Backstate(db.open(), clock=clock) as bs:
            bs.deploy("child", child)
            bs.deploy("parent", parent)
            await bs.create("parent", "p")
            for _ in range(100):
                if (await bs.get("parent", "p")).value == "finished":
                    break
                await asyncio.sleep(0.01)
            assert (await bs.get("child", "p-kid")).status == "done"
            assert db.rows("SELECT count(*) FROM timers") == [(0,)]
            clock.advance(200)
            await asyncio.sleep(0.1)
            assert (await bs.get("parent", "p")).context["late"] == 0

    asyncio.run(body())


def test_a_result_queued_before_its_state_was_left_is_delivered(db: Target) -> None:
    finish = asyncio.Event()

    async def job(input: Any) -> str:
        await finish.wait()
        return "finished"

    machine = setup(actors={"job": job}).create_machine(
        {
            "initial": "idle",
            "context": {"results": []},
            "on": {
                "xstate.done.actor.job": {
                    "actions": assign({"results": lambda c, e: [*c["results"], e["output"]]})
                }
            },
            "states": {
                "idle": {"on": {"start": "running"}},
                "running": {"invoke": {"id": "job", "src": "job"}, "on": {"leave": "idle"}},
            },
        }
    )

    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("m", machine)
            await bs.create("m", "x")
            started = asyncio.ensure_future(bs.send("m", "x", "start"))
            for _ in range(100):
                if bs.processor.entries[("m", "x")].services:
                    break
                await asyncio.sleep(0.01)
            release = threading.Event()
            commit = bs.store.commit_async

            async def held(batch: WriteBatch) -> CommitResult:
                await asyncio.to_thread(release.wait, 5)
                return await commit(batch)

            bs.store.commit_async = held  # type: ignore[method-assign]
            leaving = asyncio.ensure_future(bs.send("m", "x", "leave"))
            await asyncio.sleep(0.05)  # "leave" is applied; its commit (and stop) waits
            finish.set()  # the result is queued behind "leave"
            await asyncio.sleep(0.05)
            release.set()
            assert (await leaving).value == "idle"
            await started
            for _ in range(100):
                state = await bs.get("m", "x")
                if state.context["results"]:
                    break
                await asyncio.sleep(0.01)
            assert state.context["results"] == ["finished"]
            events = [h.event["type"] for h in await bs.history("m", "x")]
            assert events == ["xstate.init", "start", "leave", "xstate.done.actor.job"]

    asyncio.run(body())
