"""Wakes every Monday at 9 in Paris (a `cron` delay), counting in public context."""

from __future__ import annotations

from typing import Any

from backstate.chart import assign, setup
from backstate.runtime import cron

machine = setup(delays={"monday9": cron("0 9 * * MON", tz="Europe/Paris")}).create_machine(
    {
        "initial": "waiting",
        "context": {"public": {"woken": 0}},
        "states": {
            "waiting": {
                "after": {
                    "monday9": {
                        "target": "waiting",
                        "reenter": True,
                        "actions": assign(
                            {"public": lambda c, e: {"woken": c["public"]["woken"] + 1}}
                        ),
                    }
                }
            }
        },
    }
)


def allow_read(**_: Any) -> bool:
    return True


def allow_write(**_: Any) -> bool:
    return True
