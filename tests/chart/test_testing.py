"""The in-memory runner (backstate.testing): policies that no XState case covers."""

from __future__ import annotations

import json
from typing import Any

from backstate.chart import assign, send_to, setup
from backstate.testing import Actor


def test_the_result_of_a_replaced_invocation_is_dropped() -> None:
    # AGAIN re-enters 'a' while the first echo's result waits in the queue; the machine
    # cannot tell that result from the second echo's (same id), so it must not see it.
    def again_once(context: Any, event: Any) -> bool:
        return bool(context["n"] == 0)

    machine = setup(actors={"echo": lambda value: value}).create_machine(
        {
            "initial": "a",
            "context": {"n": 0, "result": None},
            "states": {
                "a": {
                    "entry": [send_to("#_self", {"type": "AGAIN"})],
                    "invoke": {
                        "id": "x",
                        "src": "echo",
                        "input": lambda c, e: c["n"],
                        "onDone": {
                            "target": "b",
                            "actions": [assign({"result": lambda c, e: e["output"]})],
                        },
                    },
                    "on": {
                        "AGAIN": {
                            "guard": again_once,
                            "target": "a",
                            "reenter": True,
                            "actions": [assign({"n": 1})],
                        }
                    },
                },
                "b": {},
            },
        }
    )
    actor = Actor(machine)
    assert (actor.snapshot.value, actor.snapshot.context) == ("b", {"n": 1, "result": 1})
    assert actor.children == {}


def test_a_restored_child_machine_reports_its_result() -> None:
    child = setup().create_machine(
        {"initial": "w", "states": {"w": {"on": {"FINISH": "f"}}, "f": {"type": "final"}}}
    )
    machine = setup(actors={"child": child}).create_machine(
        {
            "initial": "a",
            "states": {
                "a": {
                    "invoke": {"id": "c", "src": "child", "onDone": "b"},
                    "on": {"FIN": {"actions": [send_to("c", {"type": "FINISH"})]}},
                },
                "b": {},
            },
        }
    )
    actor = Actor.restore(machine, json.loads(json.dumps(Actor(machine).persist())))
    actor.send("FIN")
    assert (actor.snapshot.value, actor.children) == ("b", {})
