"""A child whose first state invokes a slow service (2 s) and counts ``poke`` events
meanwhile; it finishes with the service's result and the count."""

from __future__ import annotations

import asyncio
from typing import Any

from backstate.chart import assign, setup


async def slow(input: Any) -> dict[str, bool]:
    await asyncio.sleep(2)
    return {"ok": True}


machine = setup(actors={"slow": slow}).create_machine(
    {
        "initial": "working",
        "context": lambda input: {"job": input["job"], "pokes": 0},
        "on": {"poke": {"actions": assign({"pokes": lambda c, e: c["pokes"] + 1})}},
        "states": {
            "working": {
                "invoke": {
                    "id": "s",
                    "src": "slow",
                    "onDone": {
                        "target": "done",
                        "actions": assign({"result": lambda c, e: e["output"]}),
                    },
                }
            },
            "done": {"type": "final"},
        },
        "output": lambda c, e: {"job": c["job"], "pokes": c["pokes"], "result": c["result"]},
    }
)


def allow_read(**_: Any) -> bool:
    return True


def allow_write(**_: Any) -> bool:
    return True
