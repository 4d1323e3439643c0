"""SQLite's writer process (store/_sqlite_writer) killed with SIGKILL while events flow:
an event answered is in the file exactly once, an event refused (503) at most once, the
history has no gap and no double, and the instances go on once a new writer starts."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from backstate.runtime import Backstate, BackstateError
from backstate.store import SQLiteStore
from tests.runtime.test_races import COUNTER

INSTANCES = 8
EVENTS = 60  # per instance, one after another
KILLS = 3


def test_a_writer_killed_mid_flight_loses_no_answered_event_and_doubles_none(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        store = SQLiteStore(tmp_path / "a.db")
        async with Backstate(store) as bs:
            bs.deploy("counter", COUNTER)
            names = [f"c{i}" for i in range(INSTANCES)]
            for name in names:
                await bs.create("counter", name)

            async def send_all(name: str) -> tuple[int, int]:
                answered = refused = 0
                for _ in range(EVENTS):
                    try:
                        await bs.send("counter", name, "inc")
                        answered += 1
                    except BackstateError as exc:
                        assert exc.code == "store-unavailable", exc
                        refused += 1
                return answered, refused

            senders = [asyncio.ensure_future(send_all(name)) for name in names]
            killed = 0
            while killed < KILLS and not all(s.done() for s in senders):
                await asyncio.sleep(0.03)
                process = store._writer._process
                if process is not None and process.poll() is None:
                    os.kill(process.pid, signal.SIGKILL)
                    killed += 1
            results = await asyncio.gather(*senders)
            assert killed == KILLS
            assert sum(refused for _, refused in results) >= 1  # a kill cut a commit short
            for name, (answered, refused) in zip(names, results, strict=True):
                state = await bs.get("counter", name)
                n = state.context["n"]
                assert answered <= n <= answered + refused, (name, answered, refused, n)
                history = await bs.history("counter", name, limit=1000)
                assert [h.seq for h in history] == list(range(state.seq + 1))  # 0: creation
                assert [h.snapshot["context"]["n"] for h in history] == list(range(n + 1))
                assert (await bs.send("counter", name, "inc")).context["n"] == n + 1

    asyncio.run(body())
