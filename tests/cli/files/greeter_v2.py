"""The greeter with its "listening" state renamed "ready", and one change of behaviour
that a dry-run upgrade finds: ``say {text: "twice"}`` counts two."""

from __future__ import annotations

from typing import Any

from backstate.chart import assign, setup


def say(context: dict[str, Any], event: dict[str, Any]) -> None:
    print(f"said {event.get('text', '')}")


def count(context: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    return {"said": context["public"]["said"] + (2 if event.get("text") == "twice" else 1)}


machine = setup(actions={"say": say, "count": assign({"public": count})}).create_machine(
    {
        "id": "greeter",
        "initial": "ready",
        "context": {"public": {"said": 0}},
        "states": {
            "ready": {"on": {"say": {"actions": ["count", "say"]}, "finish": "finished"}},
            "finished": {"type": "final"},
        },
    }
)


def allow_read(**_: Any) -> bool:
    return True


def allow_write(**_: Any) -> bool:
    return True
