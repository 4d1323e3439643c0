"""A round's API events reach a sandboxed worker in one batch: every instance of the
batch gets what it would have got alone. Code that loops, sleeps, raises or kills its
worker in one instance's transition fails that event only (with its own stable code,
nothing stored for it); the others of the same batch are made and committed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from backstate.runtime import Backstate, BackstateError
from backstate.sandbox import Limits, Sandbox
from backstate.sandbox._jail import TRANSITIONS

SOURCE = """
import os
import time

from backstate.chart import assign, setup


def bump(context, event):
    how = event.get("how")
    if how == "spin":
        while True:
            pass
    if how == "sleep":
        time.sleep(30)
    if how == "deaf":  # turns off the worker's timers and spins
        import signal

        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        while True:
            pass
    if how == "stubborn":  # catches the worker's interruptions and spins on
        while True:
            try:
                while True:
                    pass
            except BaseException:
                pass
    if how == "raise":
        raise ValueError("refused by the machine")
    if how == "exit":
        os._exit(3)
    return context["count"] + 1


machine = setup(actions={"bump": assign({"count": bump})}).create_machine(
    {
        "id": "counter",
        "initial": "on",
        "context": {"count": 0},
        "states": {"on": {"on": {"go": {"actions": ["bump"]}}}},
    }
)


def allow_read(**_):
    return True


def allow_write(**_):
    return True
"""

MACHINE = "org0.counter"
N = 40


async def _started(tmp_path: Path) -> tuple[Sandbox, Backstate]:
    """A runtime with the counter deployed in a sandbox (0.5 s of CPU per call)."""
    sandbox = Sandbox(tmp_path / "sandbox", Limits(cpu_seconds=0.5))
    bs = Backstate(tmp_path / "db.sqlite", code=sandbox)
    await sandbox.deploy(bs, MACHINE, SOURCE, filename="counter.py")
    await bs.start()
    return sandbox, bs


async def _fleet(
    tmp_path: Path, bad: dict[str, Any] | None, at: tuple[int, ...] = (7,)
) -> tuple[list[Any], Backstate]:
    _, bs = await _started(tmp_path)
    await asyncio.gather(*(bs.create(MACHINE, f"i{i}") for i in range(N)))
    await asyncio.gather(*(bs.send(MACHINE, f"i{i}", {"type": "go"}) for i in range(N)))
    batches = bs.processor.stats.batches
    # All at once: one round, one batch (N < CHUNK), instance 7's event the bad one.
    events = [{"type": "go", **(bad if bad and i in at else {})} for i in range(N)]
    results = await asyncio.gather(
        *(bs.send(MACHINE, f"i{i}", e) for i, e in enumerate(events)), return_exceptions=True
    )
    assert bs.processor.stats.batches > batches
    return results, bs


@pytest.mark.parametrize(
    ("how", "code"),
    [
        (None, None),
        ("raise", "event-rejected"),
        ("spin", "user-code-timeout"),
        ("sleep", "user-code-timeout"),
        ("stubborn", "user-code-timeout"),
        ("deaf", "user-code-timeout"),
        ("exit", "user-code-crashed"),
    ],
)
def test_one_instances_bad_code_fails_only_its_own_event(
    tmp_path: Path, how: str | None, code: str | None
) -> None:
    async def main() -> None:
        results, bs = await _fleet(tmp_path, {"how": how} if how else None)
        try:
            for i, result in enumerate(results):
                if i == 7 and code is not None:
                    assert isinstance(result, BackstateError), result
                    assert result.code == code, result
                    continue
                assert not isinstance(result, BaseException), (i, result)
                assert result.context["count"] == 2
            # Stored: two bumps for each, one for the instance whose event failed.
            for i in range(N):
                state = await bs.get(MACHINE, f"i{i}")
                assert state.context["count"] == (1 if i == 7 and code else 2), i
                history = bs.store.history((MACHINE, f"i{i}"), -1, 100)
                assert len(history) == (2 if i == 7 and code else 3), i
            # The org's next events are served (by a fresh worker, if one was lost).
            again = await bs.send(MACHINE, "i7", {"type": "go"})
            assert again.context["count"] == (2 if code else 3)
        finally:
            await bs.close()  # and its sandbox's workers

    asyncio.run(main())


def test_several_events_that_kill_their_worker_fail_only_themselves(tmp_path: Path) -> None:
    # Each of them kills the worker the events behind it wait in: those are sent to a
    # fresh one as often as that happens, and never fail for it.
    bad = (3, 7, 11, 19)

    async def main() -> None:
        results, bs = await _fleet(tmp_path, {"how": "stubborn"}, bad)
        try:
            for i, result in enumerate(results):
                if i in bad:
                    assert isinstance(result, BackstateError), result
                    assert result.code == "user-code-timeout", result
                else:
                    assert not isinstance(result, BaseException), (i, result)
                    assert result.context["count"] == 2
        finally:
            await bs.close()

    asyncio.run(main())


def test_a_fresh_workers_first_transition_has_its_own_deadline_not_the_loads(
    tmp_path: Path,
) -> None:
    # A fresh worker loads the version first (10 s allowed), then runs the transition
    # (0.5 s of CPU, 1.5 s on the server's clock): code that catches its interruptions
    # is cut off at the transition's deadline.
    async def main() -> None:
        sandbox, bs = await _started(tmp_path)
        try:
            await bs.create(MACHINE, "a")
            workers = [w for org in sandbox.orgs.values() for w in org.workers[TRANSITIONS]]
            for worker in workers:  # the next call starts a fresh one
                worker.kill("the test")
            while any(w.alive for w in workers):
                await asyncio.sleep(0.01)
            started = time.monotonic()
            with pytest.raises(BackstateError) as refused:
                await bs.send(MACHINE, "a", {"type": "go", "how": "stubborn"})
            assert refused.value.code == "user-code-timeout"
            assert time.monotonic() - started < Limits().load_seconds / 2
        finally:
            await bs.close()

    asyncio.run(main())


def test_code_deaf_to_its_workers_timers_holds_a_batch_for_a_bounded_time(
    tmp_path: Path,
) -> None:
    # The server's deadline for a batch of 40 is the call's limit and 0.1 s per other
    # call (not 40 limits): then the batch's calls are made one by one, the deaf one
    # cut off at its own deadline (0.5 s and 1 s of margin).
    async def main() -> None:
        started = time.monotonic()
        results, bs = await _fleet(tmp_path, {"how": "deaf"})
        elapsed = time.monotonic() - started
        try:
            assert isinstance(results[7], BackstateError)
            assert results[7].code == "user-code-timeout"
            assert all(not isinstance(r, BaseException) for i, r in enumerate(results) if i != 7)
            assert elapsed < 0.5 * N / 2  # 40 limits would be 20 s
        finally:
            await bs.close()

    asyncio.run(main())
