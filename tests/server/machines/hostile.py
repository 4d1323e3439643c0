"""State keys and event names that would be markup or mermaid syntax if drawn as they
are (see tests/viz/charts.py, hostile_names); anyone may read and write."""

from __future__ import annotations

from typing import Any

from backstate.chart import setup

SCRIPT = "<script>alert(1)</script>"

machine = setup().create_machine(
    {
        "id": "x --> y",
        "initial": SCRIPT,
        "states": {
            SCRIPT: {"on": {'a : b ; c " d\n{e} #f; %%g': "state", "end": "note"}},
            "state": {"on": {"<img src=x onerror=alert(2)>": SCRIPT}},
            "note": {"type": "final"},
        },
    }
)


def allow_read(**_: Any) -> bool:
    return True


def allow_write(**_: Any) -> bool:
    return True
