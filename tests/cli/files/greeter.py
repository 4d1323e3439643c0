"""A test machine anyone may read and write: ``say {text}`` prints the text (captured
in the machine's logs) and counts in ``context.public.said``; ``finish`` ends it."""

from __future__ import annotations

from typing import Any

from backstate.chart import assign, setup


def say(context: dict[str, Any], event: dict[str, Any]) -> None:
    print(f"said {event.get('text', '')}")


machine = setup(
    actions={
        "say": say,
        "count": assign({"public": lambda c, e: {"said": c["public"]["said"] + 1}}),
    },
).create_machine(
    {
        "id": "greeter",
        "initial": "listening",
        "context": {"public": {"said": 0}},
        "states": {
            "listening": {"on": {"say": {"actions": ["count", "say"]}, "finish": "finished"}},
            "finished": {"type": "final"},
        },
    }
)


def allow_read(**_: Any) -> bool:
    return True


def allow_write(**_: Any) -> bool:
    return True
