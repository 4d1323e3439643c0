"""A machine's own step timeout (``step_timeout`` in its file, ``deploy(step_timeout=)``)
wins over the runtime's (a server's ``--step-timeout``), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from backstate.chart import assign, setup
from backstate.machine import MachineModuleError, definition, load_source
from backstate.runtime import Backstate, InvalidRequest
from backstate.sandbox import Loaded
from tests.store.targets import Target


async def slow(input: Any) -> Any:
    await asyncio.sleep(30)


SLOW = {
    "initial": "idle",
    "context": {},
    "states": {
        "idle": {"on": {"go": "working"}},
        "working": {
            "invoke": {
                "id": "s",
                "src": "slow",
                "onError": {
                    "target": "failed",
                    "actions": assign({"err": lambda c, e: e["error"]["name"]}),
                },
            }
        },
        "failed": {},
    },
}


def test_a_versions_step_timeout_wins_over_the_runtimes(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open(), step_timeout=60) as bs:
            bs.deploy("quick", setup(actors={"slow": slow}).create_machine(SLOW), step_timeout=0.3)
            await bs.create("quick", "i")
            started = time.monotonic()
            state = await bs.send("quick", "i", "go")
            assert time.monotonic() - started < 10
            assert state.value in ("working", "failed")
            deadline = time.monotonic() + 10
            while (state := await bs.get("quick", "i")).value != "failed":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            assert state.context["err"] == "Timeout"

    asyncio.run(body())


def test_deploy_refuses_a_step_timeout_out_of_range(tmp_path: Path) -> None:
    async def body() -> None:
        async with Backstate(tmp_path / "b.db") as bs:
            for bad in (0, -1, 86401, True):
                with pytest.raises(InvalidRequest) as raised:
                    bs.deploy(
                        "m", setup(actors={"slow": slow}).create_machine(SLOW), step_timeout=bad
                    )
                assert raised.value.code == "invalid-step-timeout"

    asyncio.run(body())


FILE = """
from backstate.chart import setup
machine = setup().create_machine({"initial": "a", "states": {"a": {}}})
def allow_read(**_): return True
def allow_write(**_): return True
step_timeout = %s
"""


def test_a_machine_file_sets_its_step_timeout_and_the_description_keeps_it() -> None:
    module = load_source(FILE % "2.5")
    assert module.step_timeout == 2.5
    described = definition(module)
    assert described["stepTimeout"] == 2.5
    assert Loaded.from_json(described).step_timeout == 2.5
    assert load_source(FILE % "None").step_timeout is None
    for bad in ("0", "'90'", "100000"):
        with pytest.raises(MachineModuleError) as raised:
            load_source(FILE % bad)
        assert raised.value.code == "invalid-export"
