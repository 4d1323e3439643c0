"""The toggle machine of durable.py and postgres.py, as a machine file: ``toggle`` flips
``off`` <-> ``on`` and counts every flip in ``context.count`` (an ``assign`` on every
event). Trusted runs load it in the benchmark's process (``backstate.machine.load_file``),
sandboxed runs deploy its text into workers (``Sandbox.deploy``): both run this code."""

from __future__ import annotations

from typing import Any

from backstate.chart import assign, setup

machine = setup(actions={"inc": assign({"count": lambda c, e: c["count"] + 1})}).create_machine(
    {
        "id": "toggle",
        "initial": "off",
        "context": {"count": 0},
        "states": {
            "off": {"on": {"toggle": {"target": "on", "actions": ["inc"]}}},
            "on": {"on": {"toggle": {"target": "off", "actions": ["inc"]}}},
        },
    }
)


# The benchmarks send without an auth context, so neither is called on their path.
def allow_read(**_: Any) -> bool:
    return True


def allow_write(**_: Any) -> bool:
    return True
