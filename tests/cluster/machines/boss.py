"""A parent whose first state invokes a persistent child, ``worker`` instance
``job-<context.job>``, and waits for its output."""

from __future__ import annotations

from typing import Any

from backstate.chart import assign, setup
from backstate.runtime import persistent

machine = setup(
    actors={"worker": persistent("worker", instance=lambda input: f"job-{input['job']}")}
).create_machine(
    {
        "initial": "waiting",
        "context": {"job": 0},
        "states": {
            "waiting": {
                "invoke": {
                    "id": "w",
                    "src": "worker",
                    "input": lambda c, e: {"job": c["job"]},
                    "onDone": {
                        "target": "finished",
                        "actions": assign({"result": lambda c, e: e["output"]}),
                    },
                }
            },
            "finished": {},
        },
    }
)


def allow_read(**_: Any) -> bool:
    return True


def allow_write(**_: Any) -> bool:
    return True
