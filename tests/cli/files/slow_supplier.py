"""A service that takes ten seconds: with a short step timeout it is stopped, and its
instance goes to ``failed`` with the ``Timeout`` error."""

from __future__ import annotations

import asyncio
from typing import Any

from backstate.chart import setup


async def supplier(input: Any) -> Any:
    await asyncio.sleep(10)
    return "late"


machine = setup(actors={"supplier": supplier}).create_machine(
    {
        "id": "slow-supplier",
        "initial": "idle",
        "states": {
            "idle": {"on": {"order": "ordering"}},
            "ordering": {"invoke": {"id": "call", "src": "supplier", "onError": "failed"}},
            "failed": {},
        },
    }
)


def allow_read(**_: Any) -> bool:
    return True


def allow_write(**_: Any) -> bool:
    return True
