"""The toggler quick start: `toggle` flips on <-> off and counts how often it was
turned off in `context.public.toggleCount`. Only the session named like the instance
may read or write it."""

from __future__ import annotations

from typing import Any

from backstate.chart import assign, setup

machine = setup(
    actions={
        "count": assign(
            {"public": lambda c, e: {**c["public"], "toggleCount": c["public"]["toggleCount"] + 1}}
        )
    },
).create_machine(
    {
        "id": "toggler",
        "initial": "on",
        "context": {"public": {"toggleCount": 0}},
        "states": {
            "on": {"on": {"toggle": {"target": "off", "actions": "count"}}},
            "off": {"on": {"toggle": "on"}},
        },
    }
)


def allow_read(*, machine_instance_name: str, auth_context: dict[str, Any], **_: Any) -> bool:
    return machine_instance_name == auth_context.get("sid")


def allow_write(*, machine_instance_name: str, auth_context: dict[str, Any], **_: Any) -> bool:
    return machine_instance_name == auth_context.get("sid")
