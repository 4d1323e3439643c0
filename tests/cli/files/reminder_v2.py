"""An instance that waits: ``pending`` (v1: ``waiting``) has an ``after`` timer of an hour to ``late``."""

from __future__ import annotations

from typing import Any

from backstate.chart import setup

machine = setup().create_machine(
    {
        "id": "reminder",
        "initial": "pending",
        "states": {"pending": {"after": {"3600000": "late"}}, "late": {}},
    }
)


def allow_read(**_: Any) -> bool:
    return True


def allow_write(**_: Any) -> bool:
    return True
