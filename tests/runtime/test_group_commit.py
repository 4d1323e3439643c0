"""Pipelining and group commit: the work that arrives while a round commits is applied
meanwhile, into the next round, which is committed as one once the first is done (not
left waiting until then, and not split into a round of the first arrivals and another of
the rest). Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from backstate.runtime import Backstate
from tests.runtime.test_races import COUNTER, _slow_commits
from tests.store.targets import Target


def test_work_that_comes_during_a_commit_is_applied_meanwhile_and_committed_as_one(
    db: Target,
) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("counter", COUNTER)
            for k in range(10):
                await bs.create("counter", f"c{k}")
            release = _slow_commits(bs)
            commits = bs.processor.stats.commits
            blocker = asyncio.ensure_future(bs.send("counter", "c0", "inc"))
            await asyncio.sleep(0.05)  # its round is committing
            waves = []
            for wave in range(3):
                waves += [
                    asyncio.ensure_future(bs.send("counter", f"c{k}", "inc"))
                    for k in range(1 + 3 * wave, 4 + 3 * wave)
                ]
                await asyncio.sleep(0.05)
                # Applied already, in the round that commits next: the loop did not sit
                # waiting for the commit in flight (the pipelining once did, woken by
                # its own step), and did not seal the first wave's round alone.
                assert len(bs.processor.round.updates) == 3 * (wave + 1)
            assert not any(s.done() for s in waves)
            release.set()
            assert (await blocker).context["n"] == 1
            assert [(await s).context["n"] for s in waves] == [1] * 9
            assert bs.processor.stats.commits - commits == 2  # the blocker's, then the rest
            for k in range(10):
                assert (await bs.get("counter", f"c{k}")).seq == 1

    asyncio.run(body())


def test_a_burst_with_no_commit_in_flight_is_committed_in_two_overlapping_rounds(
    db: Target,
) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("counter", COUNTER)
            for k in range(20):
                await bs.create("counter", f"c{k}")
            release = _slow_commits(bs)
            commits = bs.processor.stats.commits
            burst = [asyncio.ensure_future(bs.send("counter", f"c{k}", "inc")) for k in range(20)]
            await asyncio.sleep(0.1)
            # Half went into the round that is committing; the other half is applied
            # meanwhile, so the commit did not run with nothing beside it.
            assert len(bs.processor.round.updates) == 10
            assert not any(s.done() for s in burst)
            release.set()
            assert [(await s).context["n"] for s in burst] == [1] * 20
            assert bs.processor.stats.commits - commits == 2

    asyncio.run(body())
