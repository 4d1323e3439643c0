"""Headless rating (State Backed example §8.6): one instance per (rater, item) and one
aggregate instance per item, kept in step by messages between instances.

What it shows:

- ``rating_machine`` (instances named ``<rater>-<item>``): the first ``rate`` clamps the
  rating to 0..5, records it in ``public.rating`` and sends ``addToRating {rating,
  count: 1}`` to the aggregate instance named after the item with
  ``send_to(instance_ref(AGGREGATE_MACHINE, item), ...)``; later ``rate`` events send
  only the change, ``{rating: new - old, count: 0}``;
- ``aggregate_machine`` (instances named after the item) sums ``public.totalRating``
  and ``public.count``, so the average is ``totalRating / count``;
- authorization between instances: the aggregate accepts writes only from the rating
  machine and only from a rating instance whose name ends with ``-<item>``
  (``auth_context["stateBackedSender"]``); a forged message is refused, retried and
  finally dead-lettered. Clients may create an aggregate named after its own item.
  The rating instance accepts writes only from its rater (``sub``) under the right name.

Deploy it::

    bs.deploy(RATING_MACHINE, rating_machine,
              allow_read=allow_read_rating, allow_write=allow_write_rating)
    bs.deploy(AGGREGATE_MACHINE, aggregate_machine,
              allow_read=allow_read_aggregate, allow_write=allow_write_aggregate)
"""

from __future__ import annotations

from typing import Any

from backstate.chart import assign, enqueue_actions, send_to, setup
from backstate.runtime import instance_ref

RATING_MACHINE = "rating"
AGGREGATE_MACHINE = "aggregate-rating"
MAX_RATING = 5


def clamp(rating: Any) -> float:
    return max(0, min(rating, MAX_RATING))


def rating_instance_name(rater: str, item: str) -> str:
    return f"{rater}-{item}"


def rating_context(rater: str, item: str) -> dict[str, Any]:
    return {"item": item, "rater": rater, "public": {"rating": None}}


def aggregate_context(item: str) -> dict[str, Any]:
    return {"item": item, "public": {"totalRating": 0, "count": 0}}


def _to_aggregate(context: dict[str, Any], event: dict[str, Any]) -> str:
    return instance_ref(AGGREGATE_MACHINE, context["item"])


def _first_rating(context: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    return {
        **context,
        "item": event.get("item", context["item"]),
        "rater": event.get("rater", context["rater"]),
        "public": {**context["public"], "rating": clamp(event["rating"])},
    }


def _rerate(context: dict[str, Any], event: dict[str, Any], enqueue: Any) -> None:
    rating = clamp(event["rating"])
    change = rating - context["public"]["rating"]
    enqueue(assign({"public": {**context["public"], "rating": rating}}))
    enqueue(send_to(_to_aggregate, {"type": "addToRating", "rating": change, "count": 0}))


rating_machine = setup().create_machine(
    {
        "id": "rating",
        "initial": "unrated",
        "context": lambda input: rating_context(
            (input or {}).get("rater", ""), (input or {}).get("item", "")
        ),
        "states": {
            "unrated": {
                "on": {
                    "rate": {
                        "target": "rated",
                        "actions": [
                            assign(_first_rating),
                            send_to(
                                _to_aggregate,
                                lambda context, event: {
                                    "type": "addToRating",
                                    "rating": clamp(event["rating"]),
                                    "count": 1,
                                },
                            ),
                        ],
                    }
                }
            },
            "rated": {"on": {"rate": {"actions": enqueue_actions(_rerate)}}},
        },
    }
)


def _add_to_rating(context: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    public = context["public"]
    return {
        **context,
        "public": {
            "totalRating": public["totalRating"] + event["rating"],
            "count": public["count"] + event["count"],
        },
    }


aggregate_machine = setup().create_machine(
    {
        "id": "aggregate-rating",
        "initial": "aggregating",
        "context": lambda input: aggregate_context((input or {}).get("item", "")),
        "states": {
            "aggregating": {"on": {"addToRating": {"actions": assign(_add_to_rating)}}},
        },
    }
)

# -- authorization ----------------------------------------------------------------------


def allow_read_rating(*, auth_context: dict[str, Any], context: Any, **_: Any) -> bool:
    """Only the rater reads their rating."""
    return auth_context.get("sub") == (context or {}).get("rater")


def allow_write_rating(
    *,
    machine_instance_name: str,
    auth_context: dict[str, Any],
    context: Any,
    event: dict[str, Any] | None = None,
    **_: Any,
) -> bool:
    """Only the rater writes, the instance is named ``<rater>-<item>``, and a ``rate``
    event may not claim another rater or item."""
    rater, item = (context or {}).get("rater"), (context or {}).get("item")
    if not rater or not item or auth_context.get("sub") != rater:
        return False
    if machine_instance_name != rating_instance_name(rater, item):
        return False
    event = event or {}
    return event.get("rater", rater) == rater and event.get("item", item) == item


def allow_read_aggregate(**_: Any) -> bool:
    """Anyone may read an aggregate rating."""
    return True


def allow_write_aggregate(
    *,
    machine_instance_name: str,
    auth_context: dict[str, Any],
    context: Any,
    write_type: str,
    **_: Any,
) -> bool:
    """Messages only from the rating machine, from an instance named ``...-<item>``;
    clients may only create the aggregate named after its own item."""
    item = (context or {}).get("item")
    sender = auth_context.get("stateBackedSender")
    if sender is not None:
        return (
            bool(item)
            and sender.get("machineName") == RATING_MACHINE
            and str(sender.get("machineInstanceName", "")).endswith(f"-{item}")
        )
    return write_type == "initialization" and item == machine_instance_name


# As a machine file (`backstate dev examples/` deploys it as the machine "rating"; the
# aggregate it sends to is examples/aggregate_rating.py, deployed as "aggregate-rating").
machine = rating_machine
allow_read = allow_read_rating
allow_write = allow_write_rating
