"""What happened and why, in the trusted runtime (the ``Backstate`` library): an event
that selects no transition says why; machine code that raises is named, with its
traceback in the instance's logs; a failing service writes a log line."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from backstate.chart import assign, setup
from backstate.runtime import Backstate, EventRejected, InvalidRequest
from tests.store.targets import Target


def is_manager(context: Any, event: Any) -> bool:
    return event.get("role") == "manager"


def explodes(context: Any, event: Any) -> bool:
    raise KeyError("budget")


async def refuses(input: Any) -> Any:
    raise ConnectionError("no route to the supplier")


MACHINE = setup(
    guards={"isManager": is_manager, "explodes": explodes},
    actions={"total": assign({"total": lambda c, e: 1 / 0})},
    actors={"supplier": refuses},
).create_machine(
    {
        "initial": "draft",
        "context": {},
        "states": {
            "draft": {"on": {"submit": "review", "order": "ordering"}},
            "review": {
                "on": {
                    "approve": {"guard": "isManager", "target": "closed"},
                    "check": {"guard": "explodes", "target": "closed"},
                    "sum": {"actions": "total"},
                }
            },
            "ordering": {
                "invoke": {"id": "call", "src": "supplier", "onError": "draft"},
            },
            "closed": {"type": "final"},
        },
    }
)


async def _logs(bs: Backstate, needle: str) -> list[str]:
    for _ in range(300):
        found = [row.message for row in await bs.logs(machine="po") if needle in row.message]
        if found:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"no log line with {needle!r}")


def test_events_that_change_nothing_say_why(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("po", MACHINE)
            await bs.create("po", "one")
            state = await bs.send("po", "one", "submitt")
            assert state.no_transition == {
                "reason": "no-transition",
                "eventType": "submitt",
                "states": ["draft"],
                "accepts": ["order", "submit"],
            }
            assert (await bs.send("po", "one", "submit")).no_transition is None
            state = await bs.send("po", "one", {"type": "approve", "role": "clerk"})
            assert state.no_transition is not None
            assert (state.no_transition["reason"], state.no_transition["guards"]) == (
                "guards-false",
                ["isManager"],
            )
            state = await bs.send("po", "one", {"type": "approve", "role": "manager"})
            assert state.done and state.no_transition is None
            state = await bs.send("po", "one", "submit")
            assert state.no_transition == {
                "reason": "done",
                "eventType": "submit",
                "states": ["closed"],
            }

    asyncio.run(body())


@pytest.mark.parametrize(
    "quoted", ['"submit"', "'submit'", " submit", "sub\nmit", "*", "x" * 257, "submit.*"]
)
def test_event_types_that_no_transition_can_take_are_refused(db: Target, quoted: str) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("po", MACHINE)
            await bs.create("po", "one")
            with pytest.raises(InvalidRequest) as info:
                await bs.send("po", "one", quoted)
            assert info.value.code == "invalid-event"
            assert len(await bs.history("po", "one")) == 1  # nothing was recorded
            if quoted == " submit":
                assert "pass the type without the spaces around it: -e submit" in str(info.value)

    asyncio.run(body())


def test_event_types_may_be_any_text_a_transition_names(db: Target) -> None:
    spaced = {"initial": "a", "states": {"a": {"on": {"Add requirement block": "b"}}, "b": {}}}

    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("spaced", setup().create_machine(spaced))
            await bs.create("spaced", "one")
            assert (await bs.send("spaced", "one", "Add requirement block")).value == "b"

    asyncio.run(body())


def test_raising_code_is_named_and_its_traceback_logged(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("po", MACHINE)
            await bs.create("po", "one")
            await bs.send("po", "one", "submit")
            with pytest.raises(EventRejected) as info:
                await bs.send("po", "one", "check")
            assert info.value.code == "event-rejected"
            assert "guard 'explodes' raised KeyError: 'budget' (" in info.value.message
            assert "in explodes)" in info.value.message
            with pytest.raises(EventRejected) as info:
                await bs.send("po", "one", "sum")
            assert "assign 'total' raised ZeroDivisionError: division by zero" in str(
                info.value.message
            )
            (logged,) = await _logs(bs, "guard 'explodes'")
            assert "Traceback (most recent call last):" in logged
            assert logged.rstrip().endswith("KeyError: 'budget'")
            assert "backstate/chart" not in logged  # the user's frames only

    asyncio.run(body())


def test_a_failing_service_writes_a_log_line(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("po", MACHINE)
            await bs.create("po", "one")
            await bs.send("po", "one", "order")
            (line,) = await _logs(bs, "service 'supplier'")
            assert line == (
                "service 'supplier' ('call') failed: ConnectionError: no route to the supplier"
            )

    asyncio.run(body())
