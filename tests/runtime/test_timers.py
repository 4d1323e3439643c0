"""Durable timers that transitions re-arm: a state re-entering itself on its own
``after`` (the ordinary polling loop) and two states whose timers alternate. Each keeps
exactly one timer row in the store after every firing and goes on firing across
restarts. Each test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from backstate.chart import assign, setup
from backstate.runtime import Backstate, SimulatedClock
from tests.store.targets import Target

POLLING = {
    "initial": "polling",
    "context": {"polls": 0},
    "states": {
        "polling": {
            "after": {
                "100": {
                    "target": "polling",
                    "reenter": True,
                    "actions": assign({"polls": lambda c, e: c["polls"] + 1}),
                }
            }
        }
    },
}

ALTERNATING = {
    "initial": "a",
    "context": {"flips": 0},
    "states": {
        "a": {"after": {"100": {"target": "b", "actions": "flip"}}},
        "b": {"after": {"100": {"target": "a", "actions": "flip"}}},
    },
}


def _machines() -> dict[str, Any]:
    flip = assign({"flips": lambda c, e: c["flips"] + 1})
    return {
        "polling": setup().create_machine(POLLING),
        "alternating": setup(actions={"flip": flip}).create_machine(ALTERNATING),
    }


async def _settle(bs: Backstate, machine: str, name: str, field: str, count: int) -> None:
    for _ in range(300):
        if (await bs.get(machine, name)).context[field] >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{machine}/{name} did not reach {field}={count}")


def test_re_armed_timers_keep_their_row_and_fire_after_restarts(db: Target) -> None:
    clock = SimulatedClock(0)
    fields = {"polling": "polls", "alternating": "flips"}

    async def run(round_: int, create: bool) -> None:
        async with Backstate(db.open(), clock=clock) as bs:
            for name, machine in _machines().items():
                bs.deploy(name, machine)
                if create:
                    await bs.create(name, "x")
            for tick in range(3):
                clock.advance(100)
                for name, field in fields.items():
                    await _settle(bs, name, "x", field, round_ * 3 + tick + 1)
                await asyncio.sleep(0.05)  # the round that fired it is committed
                rows = db.rows("SELECT machine, due FROM timers ORDER BY machine")
                # One row per instance, due one period after the firing: the clean-up of
                # the timer that fired must not delete the one its transition re-armed.
                assert rows == [
                    ("alternating", clock.now_ms() + 100),
                    ("polling", clock.now_ms() + 100),
                ], rows

    for round_ in range(3):  # a clean restart between rounds
        asyncio.run(run(round_, create=round_ == 0))
