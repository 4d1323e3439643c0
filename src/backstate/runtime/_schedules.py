"""Calendar delays: ``cron("0 9 * * MON", tz="Europe/Paris")`` is a delay function for
``setup(delays=...)``, so that ``after: {"monday9": ...}`` waits until the next time the
expression matches, in that time zone (croniter computes it, daylight-saving changes
included). The wait is a durable timer like any ``after``: it fires after a restart, at
once if it fell due while the process was down; re-entering the state schedules the
next occurrence.

The delay is computed when its state is entered, from the runtime's clock (a simulated
one in tests; in a sandbox worker, the host's time), so the timer fires at the
occurrence give or take the few milliseconds between the two.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter  # type: ignore[import-untyped]  # no stubs

from . import _logs

EARLY_MS = 1000  # how early a timer may fire and still count as on time


def cron(expression: str, tz: str = "UTC") -> Callable[[Any, Any], int]:
    """A delay (ms) until the next time ``expression`` (five fields: minute hour
    day-of-month month day-of-week) matches in time zone ``tz``; ``ValueError`` for an
    expression or zone that is not one."""
    if not isinstance(expression, str) or not croniter.is_valid(expression):
        raise ValueError(f"not a cron expression: {expression!r}")
    if len(expression.split()) != 5:
        raise ValueError(f"a cron expression has five fields: {expression!r}")
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc

    def until_next(context: Any, event: Any) -> int:
        now = _logs.now_ms()
        # The timer is armed from the step's time, a little before this one (a sandbox
        # worker reads its own clock): it may fire a few ms early, and the state it
        # re-enters must then wait for the next occurrence, not this one again.
        start = datetime.fromtimestamp((now + EARLY_MS) / 1000, zone)
        following: datetime = croniter(expression, start).get_next(datetime)
        return max(0, int(following.timestamp() * 1000) - now)

    return until_next
