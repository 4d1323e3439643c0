"""Calendar delays (``cron``) on durable timers, on SQLite and PostgreSQL, with a
simulated clock: every Monday at 9 in Paris, across a daylight-saving change and a
restart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from backstate.chart import assign, setup
from backstate.runtime import Backstate, SimulatedClock, cron
from tests.store.targets import Target

from .test_backstate import run


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


WEEKLY = setup(delays={"monday9": cron("0 9 * * MON", tz="Europe/Paris")}).create_machine(
    {
        "initial": "waiting",
        "context": {"woken": 0},
        "states": {
            "waiting": {
                "after": {
                    "monday9": {
                        "target": "waiting",
                        "reenter": True,
                        "actions": assign({"woken": lambda c, e: c["woken"] + 1}),
                    }
                }
            }
        },
    }
)


def test_every_monday_at_9_in_paris_across_dst_and_a_restart(db: Target) -> None:
    clock = SimulatedClock(_ms("2026-03-20T12:00:00"))  # a Friday; CET (UTC+1)

    def due() -> int:
        return int(db.rows("SELECT due FROM timers")[0][0])

    async def woken(bs: Backstate, count: int) -> None:
        for _ in range(300):
            if (await bs.get("m", "i")).context["woken"] == count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"not woken {count} times")

    async def body() -> None:
        async with Backstate(db.open(), clock=clock) as bs:
            bs.deploy("m", WEEKLY)
            await bs.create("m", "i")
            assert due() == _ms("2026-03-23T08:00:00")  # 9:00 CET
            clock.advance(due() - clock.now_ms())
            await woken(bs, 1)
            # Summer time began on Sunday the 29th: 9:00 CEST is 7:00 UTC.
            assert due() == _ms("2026-03-30T07:00:00")
        async with Backstate(db.open(), clock=clock) as bs:
            bs.deploy("m", WEEKLY)
            clock.advance(due() - clock.now_ms() - 1)
            await asyncio.sleep(0.05)
            assert (await bs.get("m", "i")).context["woken"] == 1
            clock.advance(1)
            await woken(bs, 2)
            assert due() == _ms("2026-04-06T07:00:00")

    run(body)


@pytest.mark.parametrize(
    ("expression", "tz"),
    [("0 9 * *", "UTC"), ("every monday", "UTC"), ("0 9 * * MON", "Mars/Olympus")],
)
def test_bad_schedules_are_refused_where_they_are_written(expression: str, tz: Any) -> None:
    with pytest.raises(ValueError):
        cron(expression, tz=tz)
