"""Property: for random event histories and a random upgrade point, upgrading a durable
instance and continuing gives the same state as migrating the snapshot by hand (the
pure ``upgrade_snapshot``) and continuing on the new version: parallel regions are
migrated one leaf path at a time, and remembered history states go along."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from backstate.chart import assign, create_machine
from backstate.runtime import Backstate
from backstate.runtime._migrations import Migration, upgrade_snapshot

EVENTS = ["move", "agitate", "step", "calm", "resume", "noop"]


def game(o: str, b: str) -> Any:
    """A parallel machine: turns alternate x/``o``; a mode region whose busy state has
    substates a/``b`` and a shallow history state that ``resume`` re-enters."""
    moved = assign({"moves": lambda c, e: c["moves"] + 1})
    return create_machine(
        {
            "id": "p",
            "type": "parallel",
            "context": {"moves": 0},
            "states": {
                "turn": {
                    "initial": "x",
                    "states": {
                        "x": {"on": {"move": {"target": o, "actions": moved}}},
                        o: {"on": {"move": {"target": "x", "actions": moved}}},
                    },
                },
                "mode": {
                    "initial": "calm",
                    "states": {
                        "calm": {"on": {"agitate": "busy", "resume": "busy.hist"}},
                        "busy": {
                            "initial": "a",
                            "states": {
                                "a": {"on": {"step": b}},
                                b: {"on": {"step": "a"}},
                                "hist": {"type": "history", "history": "shallow"},
                            },
                            "on": {"calm": "calm"},
                        },
                    },
                },
            },
        }
    )


V1, V2 = game("y", "b"), game("o", "bee")
RENAMES = {"y": "o", "b": "bee"}


def upgrade_state(path: list[str], context: Any) -> list[str]:
    return [RENAMES.get(key, key) for key in path]


def upgrade_context(old: list[list[str]], new: list[list[str]], context: Any) -> Any:
    return {**context, "paths": len(new)}


MIGRATION = Migration("m", "p", "v1", "v2", upgrade_state, upgrade_context)


def by_hand(before: list[str], after: list[str]) -> tuple[Any, Any]:
    snapshot, _ = V1.initial_transition()
    for event in before:
        snapshot, _ = V1.transition(snapshot, {"type": event})
    data = upgrade_snapshot(snapshot.to_json(), [MIGRATION], V1, V2)
    snapshot = V2.resolve_snapshot(data)
    for event in after:
        snapshot, _ = V2.transition(snapshot, {"type": event})
    return snapshot.value, snapshot.context


async def durably(folder: Path, before: list[str], after: list[str]) -> tuple[Any, Any]:
    def backstate() -> Backstate:
        bs = Backstate(folder / "p.db")
        bs.deploy("p", V1, version="v1")
        bs.deploy("p", V2, version="v2", make_current=False)
        bs.add_migration("p", "m", "v1", "v2", upgrade_state, upgrade_context)
        return bs

    async with backstate() as bs:
        await bs.create("p", "i")
        for event in before:
            await bs.send("p", "i", event)
        await bs.set_desired_version("p", "i", "v2", now=not after)
    # A restart between asking for the upgrade and the event that applies it.
    async with backstate() as bs:
        for event in after:
            await bs.send("p", "i", event)
        state = await bs.get("p", "i")
        assert state.version == "v2"
        return state.value, state.context


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(EVENTS), max_size=12),
    st.lists(st.sampled_from(EVENTS), max_size=8),
)
def test_upgrade_then_continue_equals_migrate_then_continue(
    before: list[str], after: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        got = asyncio.run(durably(Path(folder), before, after))
    assert got == by_hand(before, after)


def test_history_goes_along() -> None:
    # busy.b is remembered, renamed to bee, and re-entered through the history state.
    value, _ = by_hand(["agitate", "step", "calm"], ["resume"])
    assert value == {"turn": "x", "mode": {"busy": "bee"}}
