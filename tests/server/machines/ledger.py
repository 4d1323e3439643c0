"""A ledger for the idempotency tests: `add` adds `amount` to the public total; `slow`
also runs a service that sleeps `seconds` before the request is answered (the window in
which a test kills the server: committed, not yet answered)."""

from __future__ import annotations

import time
from typing import Any

from backstate.chart import assign, setup


def nap(input: Any) -> Any:
    time.sleep(input)
    return input


machine = setup(actors={"nap": nap}).create_machine(
    {
        "initial": "open",
        "context": {"public": {"total": 0}},
        "states": {
            "open": {
                "on": {
                    "add": {
                        "actions": assign(
                            {"public": lambda c, e: {"total": c["public"]["total"] + e["amount"]}}
                        )
                    },
                    "slow": {
                        "target": "napping",
                        "actions": assign(
                            {"public": lambda c, e: {"total": c["public"]["total"] + e["amount"]}}
                        ),
                    },
                }
            },
            "napping": {
                "invoke": {
                    "src": "nap",
                    "input": lambda c, e: e["seconds"],
                    "onDone": "open",
                    "onError": "open",
                }
            },
        },
    }
)


def allow_read(**_: Any) -> bool:
    return True


def allow_write(**_: Any) -> bool:
    return True
