"""Instances that message each other (for dead letters): ``go`` with ``{"to": name}``
sends ``msg`` to that courier; ``msg`` is refused (its guard raises, so the sender's
message is retried, then dead-lettered) until the receiver got ``open``, which also
prints a log line with markup in it. Anyone may read and write; ``got`` (public) is
indexed; ``received`` has a timer."""

from __future__ import annotations

from typing import Any

from backstate.chart import assign, send_to, setup
from backstate.runtime import instance_ref


def is_open(context: Any, event: Any) -> bool:
    if not context["public"]["open"]:
        raise RuntimeError("not open yet")
    return True


def announce(context: Any, event: Any) -> None:
    print(f"opened <b>{context['public'].get('note', '')}</b>")


def _with(context: Any, **changes: Any) -> Any:
    return {**context, "public": {**context["public"], **changes}}


machine = setup(
    guards={"isOpen": is_open},
    actions={
        "open": assign(lambda c, e: _with(c, open=True)),
        "announce": announce,
        "receive": assign(lambda c, e: _with(c, got=c["public"]["got"] + 1)),
        "deliver": send_to(lambda c, e: instance_ref("courier", e["to"]), {"type": "msg"}),
    },
).create_machine(
    {
        "id": "courier",
        "initial": "waiting",
        "context": {"public": {"got": 0, "open": False}},
        "states": {
            "waiting": {
                "on": {
                    "open": {"actions": ["open", "announce"]},
                    "go": {"actions": "deliver"},
                    "msg": {"target": "received", "guard": "isOpen", "actions": "receive"},
                }
            },
            "received": {
                "on": {"msg": {"actions": "receive"}, "go": {"actions": "deliver"}},
                "after": {"3600000": "waiting"},
            },
        },
    }
)

index_selectors = {"got": "$.public.got"}


def allow_read(**_: Any) -> bool:
    return True


def allow_write(**_: Any) -> bool:
    return True
