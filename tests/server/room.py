"""A machine whose readers are in its context: `kick {who}` takes one out, `ping` counts.
Used by the /rt tests: a subscriber's access can end while it is subscribed."""

from __future__ import annotations

from typing import Any

from backstate.chart import assign, setup

machine = setup(
    actions={
        "kick": assign({"members": lambda c, e: [m for m in c["members"] if m != e["who"]]}),
        "ping": assign({"public": lambda c, e: {"pings": c["public"]["pings"] + 1}}),
    },
).create_machine(
    {
        "id": "room",
        "initial": "open",
        "context": {"members": ["alice", "bob"], "public": {"pings": 0}},
        "states": {"open": {"on": {"kick": {"actions": "kick"}, "ping": {"actions": "ping"}}}},
    }
)


def allow_read(*, auth_context: dict[str, Any], context: dict[str, Any], **_: Any) -> bool:
    return auth_context.get("sid") in context["members"]


def allow_write(**_: Any) -> bool:
    return True
