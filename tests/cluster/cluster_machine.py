"""The machine of the cluster tests: numbered pings, numbered messages to peers (per
receiver counters), and an `after` timer armed by an event."""

from __future__ import annotations

from typing import Any

from backstate.chart import assign, send_to, setup
from backstate.runtime import instance_ref

MACHINE = "cluster-machine"


def _count(context: dict[str, Any], event: dict[str, Any]) -> dict[str, int]:
    peer = event["to"]
    return {**context["out"], peer: context["out"].get(peer, 0) + 1}


def _target(context: dict[str, Any], event: dict[str, Any]) -> str:
    return instance_ref(MACHINE, event["to"])


def _message(context: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    peer = event["to"]
    return {"type": "msg", "from": context["name"], "n": context["out"][peer]}


machine = setup().create_machine(
    {
        "id": "node",
        "initial": "idle",
        "context": {"name": "", "out": {}, "pings": 0},
        "on": {
            "ping": {"actions": assign({"pings": lambda c, e: c["pings"] + 1})},
            "relay": {"actions": [assign({"out": _count}), send_to(_target, _message)]},
            "msg": {},
        },
        "states": {
            "idle": {"on": {"arm": "armed"}},
            "armed": {"after": {"1500": "fired"}},
            "fired": {},
        },
    }
)


def allow_read(**_: Any) -> bool:
    return True


def allow_write(**_: Any) -> bool:
    return True
