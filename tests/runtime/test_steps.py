"""A failure while a step writes into the round (a bug of the runtime's own, simulated
here) fails only the work that caused it: what that step wrote is undone in the round,
in memory and on the timer wheel, and the other work of the same round commits.
Each test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from backstate.chart import assign, setup
from backstate.runtime import Backstate, BackstateError
from tests.store.targets import Target

MACHINE = setup().create_machine(
    {
        "initial": "a",
        "context": {"n": 0},
        "states": {
            "a": {
                "on": {
                    "go": {
                        "target": "b",
                        "actions": assign({"n": lambda c, e: c["n"] + 1}),
                    }
                }
            },
            "b": {"after": {"1000": "a"}, "on": {"go": "a"}},
        },
    },
)


def test_a_failing_step_is_undone_and_fails_only_its_own_work(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("m", MACHINE, indexes={"n": "$.n"})
            for name in ("victim", "bystander"):
                await bs.create("m", name)
            writes = bs.processor.steps.writes
            index = writes.index

            def broken(entry: Any, *args: Any) -> None:
                if entry.key[1] == "victim":
                    raise RuntimeError("a bug while writing")
                index(entry, *args)

            writes.index = broken  # type: ignore[method-assign]
            # Both in one round: the victim's step fails after it wrote its snapshot,
            # armed its timer and scheduled its publication.
            results = await asyncio.gather(
                bs.send("m", "victim", "go"),
                bs.send("m", "bystander", "go"),
                return_exceptions=True,
            )
            assert isinstance(results[0], BackstateError)
            assert results[0].code == "internal-error"
            assert results[1].value == "b"  # type: ignore[union-attr]
            victim = await bs.get("m", "victim")
            assert (victim.value, victim.seq, victim.context) == ("a", 0, {"n": 0})
            entry = bs.processor.entries[("m", "victim")]
            assert (entry.seq, entry.snapshot.value) == (0, "a")  # type: ignore[union-attr]
            assert bs.processor.wheel.timers_of(("m", "victim")) == []
            assert db.rows("SELECT instance FROM timers") == [("bystander",)]
            writes.index = index  # type: ignore[method-assign]
            assert (await bs.send("m", "victim", "go")).seq == 1
            assert bs.processor.stats.commit_failures == 0

    asyncio.run(body())


def test_the_runtime_keeps_serving_after_a_step_bug(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("m", MACHINE)
            await bs.create("m", "x")
            steps = bs.processor.steps
            commit = steps.commit_transition
            calls = {"n": 0}

            def flaky(*args: Any, **kwargs: Any) -> Any:
                calls["n"] += 1
                if calls["n"] == 1:
                    raise KeyError("a bug")
                return commit(*args, **kwargs)

            steps.commit_transition = flaky  # type: ignore[method-assign]
            with pytest.raises(BackstateError):
                await bs.send("m", "x", "go")
            assert (await bs.send("m", "x", "go")).value == "b"

    asyncio.run(body())
