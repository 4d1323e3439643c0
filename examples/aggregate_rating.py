"""Headless aggregate rating (State Backed's headless example, §8.6), as the machine
file that ``backstate dev examples/`` deploys as "aggregate-rating": one instance per
item (named after it) summing ``public.totalRating`` and ``public.count`` from the
``addToRating`` messages of the "rating" machine's instances (examples/rating.py, which
also defines this machine for the runtime tests), so the average is
``totalRating / count``.

Anyone reads it. Only the rating machine writes, and only from an instance named
``<rater>-<item>`` (``auth_context["stateBackedSender"]``); a client may create the
aggregate named after its own item."""

from __future__ import annotations

from typing import Any

from backstate.chart import assign, setup

RATING_MACHINE = "rating"


def _add_to_rating(context: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    public = context["public"]
    return {
        "totalRating": public["totalRating"] + event["rating"],
        "count": public["count"] + event["count"],
    }


machine = setup(actions={"add": assign({"public": _add_to_rating})}).create_machine(
    {
        "id": "aggregate-rating",
        "initial": "aggregating",
        "context": {"item": "", "public": {"totalRating": 0, "count": 0}},
        "states": {"aggregating": {"on": {"addToRating": {"actions": "add"}}}},
    }
)


def allow_read(**_: Any) -> bool:
    return True


def allow_write(
    *,
    machine_instance_name: str,
    auth_context: dict[str, Any],
    context: Any,
    write_type: str,
    **_: Any,
) -> bool:
    item = (context or {}).get("item")
    sender = auth_context.get("stateBackedSender")
    if sender is not None:
        return (
            bool(item)
            and sender.get("machineName") == RATING_MACHINE
            and str(sender.get("machineInstanceName", "")).endswith(f"-{item}")
        )
    return write_type == "initialization" and item == machine_instance_name
