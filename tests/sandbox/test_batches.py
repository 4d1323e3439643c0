"""A round's API events reach a sandboxed worker in one batch: every instance of the
batch gets what it would have got alone. Code that loops, sleeps, raises or kills its
worker in one instance's transition fails that event only (with its own stable code,
nothing stored for it); the others of the same batch are made and committed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from backstate.runtime import Backstate, BackstateError
from backstate.sandbox import Limits, Sandbox

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


async def _fleet(tmp_path: Path, bad: dict[str, Any] | None) -> tuple[list[Any], Backstate]:
    sandbox = Sandbox(tmp_path / "sandbox", Limits(cpu_seconds=0.5))
    bs = Backstate(tmp_path / "db.sqlite", code=sandbox)
    await sandbox.deploy(bs, MACHINE, SOURCE, filename="counter.py")
    await bs.start()
    await asyncio.gather(*(bs.create(MACHINE, f"i{i}") for i in range(N)))
    await asyncio.gather(*(bs.send(MACHINE, f"i{i}", {"type": "go"}) for i in range(N)))
    batches = bs.processor.stats.batches
    # All at once: one round, one batch (N < CHUNK), instance 7's event the bad one.
    events = [{"type": "go", **(bad if bad and i == 7 else {})} for i in range(N)]
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
