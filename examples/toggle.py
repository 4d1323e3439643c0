"""Headless toggle (State Backed's headless example, §8.6): one instance per (user,
item), named ``<user>-<item>``, that is ``on`` or ``off``. ``toggle`` flips it;
``turnOn`` and ``turnOff`` set it from either state.

The user is the auth context's ``sub`` (an authenticated user) or, for anonymous
sessions, its ``did`` (the device). Only that user reads and writes, and only the
instance named after them and the item."""

from __future__ import annotations

from typing import Any

from backstate.chart import setup

machine = setup().create_machine(
    {
        "id": "toggle",
        "initial": "on",
        "context": {"item": "", "user": "", "public": {}},
        "on": {"turnOn": ".on", "turnOff": ".off"},
        "states": {
            "on": {"on": {"toggle": "off"}},
            "off": {"on": {"toggle": "on"}},
        },
    }
)


def user_of(auth_context: dict[str, Any]) -> Any:
    return auth_context.get("sub") or auth_context.get("did")


def _is_owner(machine_instance_name: str, auth_context: dict[str, Any], context: Any) -> bool:
    if not isinstance(context, dict):
        return False
    user, item = context.get("user"), context.get("item")
    return (
        bool(user and item)
        and user == user_of(auth_context)
        and machine_instance_name == f"{user}-{item}"
    )


def allow_read(
    *, machine_instance_name: str, auth_context: dict[str, Any], context: Any, **_: Any
) -> bool:
    return _is_owner(machine_instance_name, auth_context, context)


def allow_write(
    *, machine_instance_name: str, auth_context: dict[str, Any], context: Any, **_: Any
) -> bool:
    return _is_owner(machine_instance_name, auth_context, context)
