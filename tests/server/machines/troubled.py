"""A machine for tests/server/test_serving.py: a guard that prints, an authorizer that
raises on one event, and a service that takes 30 s."""

import asyncio
from typing import Any

from backstate.chart import setup


def noisy(context: Any, event: Any) -> bool:
    print("the guard printed this")
    return True


async def slow(input: Any) -> str:
    await asyncio.sleep(30)
    return "late"


machine = setup(guards={"noisy": noisy}, actors={"slow": slow}).create_machine(
    {
        "initial": "idle",
        "states": {
            "idle": {"on": {"print": {"guard": "noisy", "target": "idle"}, "wait": "waiting"}},
            "waiting": {"invoke": {"src": "slow", "onDone": "idle"}},
        },
    }
)


def allow_read(**kw: Any) -> bool:
    return True


def allow_write(**kw: Any) -> bool:
    if kw["event"] is not None and kw["event"]["type"] == "explode":
        raise ValueError("the authorizer exploded")
    return True
