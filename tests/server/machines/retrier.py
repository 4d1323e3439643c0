"""A service under a retry policy, for the retry tests: attempt ``n`` prints ``attempt
n``, sleeps ``input["sleep"][n]`` seconds if given, fails while ``n`` is below
``input["succeed_at"]`` and otherwise returns its attempt number."""

from __future__ import annotations

import time
from typing import Any

from backstate.chart import assign, setup
from backstate.runtime import current_effect


def flaky(input: Any) -> Any:
    effect = current_effect()
    assert effect is not None
    attempt = effect.attempt
    print(f"attempt {attempt}")
    time.sleep(input.get("sleep", {}).get(str(attempt), 0))
    if attempt < input["succeed_at"]:
        raise RuntimeError(f"attempt {attempt} failed")
    return {"attempt": attempt}


machine = setup(actors={"flaky": flaky}).create_machine(
    {
        "initial": "idle",
        "context": {"public": {}},
        "invokeDefaults": {"retry": {"attempts": 4, "initial_ms": 1500, "factor": 1}},
        "states": {
            "idle": {"on": {"go": "calling"}},
            "calling": {
                "invoke": {
                    "src": "flaky",
                    "input": lambda c, e: e["input"],
                    "onDone": {
                        "target": "done",
                        "actions": assign({"public": lambda c, e: {"out": e["output"]}}),
                    },
                    "onError": {
                        "target": "failed",
                        "actions": assign({"public": lambda c, e: {"error": e["error"]}}),
                    },
                }
            },
            "done": {},
            "failed": {},
        },
    }
)


def allow_read(**_: Any) -> bool:
    return True


def allow_write(**_: Any) -> bool:
    return True
