"""A `cron` delay computed in a sandbox worker of a real `backstate serve`: the timer is
due at the next Monday 9:00 in Paris."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from .test_e2e import Server

WEEKLY = Path(__file__).parent / "machines" / "weekly.py"


def test_a_cron_delay_arms_a_timer_for_the_next_monday_at_9(tmp_path: Path) -> None:
    server = Server(tmp_path, deploy=WEEKLY)
    try:
        me = server.headers({"sub": "u"})
        created = httpx.post(f"{server.url}/machines/weekly", json={"slug": "w"}, headers=me)
        assert created.status_code == 200, created.text
        timers = httpx.get(f"{server.url}/machines/weekly/i/w/timers", headers=me).json()["timers"]
        assert len(timers) == 1
        due = datetime.fromisoformat(timers[0]["dueAt"].replace("Z", "+00:00"))
        # Armed from the step's time, a few ms before the worker computed the delay.
        local = (due + timedelta(seconds=1)).astimezone(ZoneInfo("Europe/Paris"))
        assert (local.strftime("%a"), local.hour, local.minute) == ("Mon", 9, 0)
        assert 0 < (due - datetime.now(ZoneInfo("UTC"))).total_seconds() <= 7 * 24 * 3600
    finally:
        server.stop()
