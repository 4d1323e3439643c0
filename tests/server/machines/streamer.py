"""A service that streams: `ask` runs `write`, which publishes each of `words` as
progress (pausing `pause` seconds between them) and returns them joined."""

from __future__ import annotations

import time
from typing import Any

from backstate.chart import assign, setup
from backstate.runtime import progress


def write(input: Any) -> Any:
    for index, word in enumerate(input["words"]):
        progress({"token": word, "index": index})
        time.sleep(input.get("pause", 0.05))
    return " ".join(input["words"])


machine = setup(actors={"write": write}).create_machine(
    {
        "initial": "idle",
        "context": {"public": {}},
        "states": {
            "idle": {"on": {"ask": "writing"}},
            "writing": {
                "invoke": {
                    "id": "writer",
                    "src": "write",
                    "input": lambda c, e: e["input"],
                    "onDone": {
                        "target": "idle",
                        "actions": assign({"public": lambda c, e: {"answer": e["output"]}}),
                    },
                }
            },
        },
    }
)


def allow_read(**_: Any) -> bool:
    return True


def allow_write(**_: Any) -> bool:
    return True
