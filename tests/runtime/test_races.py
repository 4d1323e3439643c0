"""Races between callers: every one gets an answer, and the answer to an event is the
state right after that event. Each test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from backstate.chart import assign, setup
from backstate.runtime import Backstate, Conflict
from backstate.store import CommitResult, WriteBatch
from tests.store.targets import Target

COUNTER = setup().create_machine(
    {
        "initial": "on",
        "context": {"n": 0},
        "states": {"on": {"on": {"inc": {"actions": assign({"n": lambda c, e: c["n"] + 1})}}}},
    }
)


def _slow_commits(bs: Backstate) -> threading.Event:
    """Hold every commit until the returned event is set: the next round is built while
    one commits, as under load."""
    release = threading.Event()
    commit = bs.store.commit_async

    async def slow(batch: WriteBatch) -> CommitResult:
        await asyncio.to_thread(release.wait, 5)
        return await commit(batch)

    bs.store.commit_async = slow  # type: ignore[method-assign]
    return release


def test_the_loser_of_two_creates_is_answered_once_the_winner_commits(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("counter", COUNTER)
            release = _slow_commits(bs)
            first = asyncio.ensure_future(bs.create("counter", "same"))
            await asyncio.sleep(0.05)  # its round is committing
            second = asyncio.ensure_future(bs.create("counter", "same"))
            await asyncio.sleep(0.05)  # its round has nothing to write
            assert not second.done()  # not before the winner is committed
            release.set()
            assert (await asyncio.wait_for(first, 5)).seq == 0
            with pytest.raises(Conflict) as lost:
                await asyncio.wait_for(second, 5)
            assert lost.value.code == "instance-exists"
            assert (await bs.get("counter", "same")).seq == 0

    asyncio.run(body())


def test_each_event_is_answered_with_the_state_right_after_it(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("counter", COUNTER)
            await bs.create("counter", "c")
            release = _slow_commits(bs)
            blocker = asyncio.ensure_future(bs.send("counter", "c", "inc"))
            await asyncio.sleep(0.05)  # committing; the next 16 share one round
            sends: list[Any] = [
                asyncio.ensure_future(bs.send("counter", "c", "inc")) for _ in range(16)
            ]
            await asyncio.sleep(0.05)
            release.set()
            assert (await blocker).context["n"] == 1
            counts = [(await s).context["n"] for s in sends]
            assert counts == list(range(2, 18))

    asyncio.run(body())
