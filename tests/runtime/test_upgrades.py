"""Upgrading running instances to new machine versions through migrations, on SQLite
and PostgreSQL (the ``db`` fixture)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from backstate.chart import assign, create_machine
from backstate.runtime import Backstate, InvalidRequest, SimulatedClock
from backstate.runtime._upgrade_timers import plan_timers
from tests.store.targets import Target


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


def game(x: str, o: str) -> Any:
    """Turns alternate between two states named ``x`` and ``o``; moves are counted."""
    count = assign({"moves": lambda c, e: c["moves"] + 1})
    return create_machine(
        {
            "id": "game",
            "initial": "Playing",
            "context": {"moves": 0},
            "states": {
                "Playing": {
                    "initial": x,
                    "states": {
                        x: {"on": {"move": {"target": o, "actions": count}}},
                        o: {"on": {"move": {"target": x, "actions": count}}},
                    },
                }
            },
        }
    )


def rename(old: str, new: str) -> Callable[[list[str], Any], list[str]]:
    return lambda path, context: [new if key == old else key for key in path]


def keep_context(old: Any, new: Any, context: Any) -> Any:
    return context


V1 = game("Awaiting x move", "Awaiting y move")
V2 = game("Awaiting x move", "Awaiting o move")


def deploy_v1_v2(bs: Backstate, migrate_state: Any = None, migrate_context: Any = None) -> None:
    bs.deploy("ttt", V1, version="v1")
    bs.deploy("ttt", V2, version="v2", make_current=False)
    bs.add_migration(
        "ttt",
        "m12",
        "v1",
        "v2",
        migrate_state or rename("Awaiting y move", "Awaiting o move"),
        migrate_context or keep_context,
    )


def test_the_upgrade_happens_at_the_next_event_and_is_recorded(db: Target) -> None:
    async def first() -> None:
        async with Backstate(db.open()) as bs:
            deploy_v1_v2(bs)
            await bs.create("ttt", "g")
            await bs.send("ttt", "g", "move")
            state = await bs.set_desired_version("ttt", "g", "v2")
            # Nothing moves until the next event.
            assert (state.version, state.desired_version) == ("v1", "v2")
            assert state.value == {"Playing": "Awaiting y move"}
            state = await bs.send("ttt", "g", "move")
            assert (state.version, state.desired_version) == ("v2", None)
            assert state.value == {"Playing": "Awaiting x move"}
            assert state.context == {"moves": 2}
            history = await bs.history("ttt", "g")
            assert [h.event["type"] for h in history] == [
                "xstate.init",
                "move",
                "statebacked.upgrade",
                "move",
            ]
            upgrade = history[2]
            assert upgrade.event == {
                "type": "statebacked.upgrade",
                "fromMachineVersionId": "v1",
                "toMachineVersionId": "v2",
                "migrationPath": ["m12"],
            }
            assert upgrade.snapshot["value"] == {"Playing": "Awaiting o move"}

    async def after_restart() -> None:
        async with Backstate(db.open()) as bs:
            deploy_v1_v2(bs)
            state = await bs.send("ttt", "g", "move")
            assert (state.version, state.value) == ("v2", {"Playing": "Awaiting o move"})

    run(first)
    run(after_restart)
    assert db.rows("SELECT version, desired_version FROM instances") == [("v2", None)]


def test_the_desired_version_is_durable_before_the_upgrade(db: Target) -> None:
    async def first() -> None:
        async with Backstate(db.open()) as bs:
            deploy_v1_v2(bs)
            await bs.create("ttt", "g")
            await bs.set_desired_version("ttt", "g", "v2")

    async def second() -> None:
        async with Backstate(db.open()) as bs:
            deploy_v1_v2(bs)
            assert (await bs.get("ttt", "g")).desired_version == "v2"
            assert (await bs.send("ttt", "g", "move")).version == "v2"

    run(first)
    run(second)


def test_no_migration_path_is_refused_and_changes_nothing(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("ttt", V1, version="v1")
            bs.deploy("ttt", V2, version="v2", make_current=False)
            await bs.create("ttt", "g")
            with pytest.raises(InvalidRequest) as info:
                await bs.set_desired_version("ttt", "g", "v2")
            assert (info.value.code, info.value.status) == ("no-migration-path", 400)
            state = await bs.get("ttt", "g")
            assert (state.version, state.desired_version, state.seq) == ("v1", None, 0)

    run(body)
    assert db.rows("SELECT desired_version FROM instances") == [(None,)]


def test_the_shortest_chain_is_taken_in_either_direction(db: Target) -> None:
    calls: list[str] = []

    def step(name: str) -> Callable[[list[str], Any], list[str]]:
        def upgrade(path: list[str], context: Any) -> list[str]:
            calls.append(name)
            return path

        return upgrade

    async def body() -> None:
        async with Backstate(db.open()) as bs:
            for version in ("v1", "v2", "v3"):
                bs.deploy("m", V1, version=version, make_current=version == "v1")
            bs.add_migration("m", "a12", "v1", "v2", step("a12"), keep_context)
            bs.add_migration("m", "a23", "v2", "v3", step("a23"), keep_context)
            bs.add_migration("m", "a32", "v3", "v2", step("a32"), keep_context)
            await bs.create("m", "i")
            await bs.set_desired_version("m", "i", "v3", now=True)
            history = await bs.history("m", "i")
            assert history[-1].event["migrationPath"] == ["a12", "a23"]
            await bs.set_desired_version("m", "i", "v2", now=True)
            history = await bs.history("m", "i")
            assert history[-1].event["migrationPath"] == ["a32"]
            assert (await bs.get("m", "i")).version == "v2"
            # No migration leads back to v1, but its states are v2's: the identity is implied.
            assert (await bs.set_desired_version("m", "i", "v1", now=True)).version == "v1"
            history = await bs.history("m", "i")
            assert history[-1].event == {
                "type": "statebacked.upgrade",
                "fromMachineVersionId": "v2",
                "toMachineVersionId": "v1",
                "migrationPath": [],
                "impliedIdentityMigration": True,
            }

    run(body)
    assert calls == ["a12", "a23", "a32"]


@pytest.mark.parametrize(
    "migrate_state, expected_error",
    [
        (lambda path, context: 1 / 0, "ZeroDivisionError"),
        (lambda path, context: ["Playing", "Nowhere"], "not valid"),
        (lambda path, context: "Playing", "not a non-empty list"),
    ],
)
def test_a_failed_migration_leaves_the_instance_on_its_version(
    db: Target, migrate_state: Any, expected_error: str
) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            deploy_v1_v2(bs, migrate_state=migrate_state)
            await bs.create("ttt", "g")
            await bs.send("ttt", "g", "move")
            await bs.set_desired_version("ttt", "g", "v2")
            state = await bs.send("ttt", "g", "move")
            # The event ran on v1, as if no upgrade had been asked for.
            assert (state.version, state.desired_version) == ("v1", None)
            assert state.value == {"Playing": "Awaiting x move"}
            history = await bs.history("ttt", "g")
            assert [h.event["type"] for h in history] == ["xstate.init", "move", "move"]
            logs = await bs.logs(machine="ttt", instance="g")
            errors = [log.message for log in logs if log.level == "error"]
            assert len(errors) == 1
            assert "upgrade from v1 to v2 failed; the instance stays on v1" in errors[0]
            assert expected_error in errors[0]

    run(body)


def test_an_invalid_context_fails_the_migration(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            deploy_v1_v2(bs, migrate_context=lambda old, new, context: {"bad": {1, 2}})
            await bs.create("ttt", "g")
            await bs.set_desired_version("ttt", "g", "v2")
            state = await bs.send("ttt", "g", "move")
            assert (state.version, state.context) == ("v1", {"moves": 1})

    run(body)


def test_context_is_upgraded_once_per_hop_with_old_and_new_paths(db: Target) -> None:
    seen: list[Any] = []

    def upgrade_context(old: Any, new: Any, context: Any) -> Any:
        seen.append((old, new))
        return {**context, "upgraded": True}

    async def body() -> None:
        async with Backstate(db.open()) as bs:
            deploy_v1_v2(bs, migrate_context=upgrade_context)
            await bs.create("ttt", "g")
            await bs.send("ttt", "g", "move")
            state = await bs.set_desired_version("ttt", "g", "v2", now=True)
            assert state.context == {"moves": 1, "upgraded": True}

    run(body)
    assert seen == [([["Playing", "Awaiting y move"]], [["Playing", "Awaiting o move"]])]


def timed(waiting: str, delay: str = "5000") -> Any:
    return create_machine(
        {
            "id": "t",
            "initial": waiting,
            "context": {"pokes": 0},
            "states": {
                waiting: {
                    "after": {delay: "late"},
                    "on": {"poke": {"actions": assign({"pokes": lambda c, e: c["pokes"] + 1})}},
                },
                "late": {},
            },
        }
    )


@pytest.mark.parametrize(
    ("new_state", "delay", "fires_at"),
    [
        ("waiting", "5000", 5000),  # the same state: its timer is kept
        ("pending", "5000", 5000),  # renamed, same delay: the timer moves, due as before
        ("pending", "8000", 9000),  # renamed, another delay: armed at the upgrade (+1 s)
    ],
)
def test_an_upgrade_keeps_moves_or_arms_the_timers_of_its_active_states(
    db: Target, new_state: str, delay: str, fires_at: int
) -> None:
    clock = SimulatedClock()

    async def body() -> None:
        async with Backstate(db.open(), clock=clock) as bs:
            bs.deploy("t", timed("waiting"), version="v1")
            bs.deploy("t", timed(new_state, delay), version="v2", make_current=False)
            bs.add_migration("t", "m", "v1", "v2", rename("waiting", new_state), keep_context)
            start = clock.now_ms()
            await bs.create("t", "i")
            clock.advance(1000)
            await bs.set_desired_version("t", "i", "v2")
            state = await bs.send("t", "i", "poke")
            assert (state.version, state.value) == ("v2", new_state)
            ((key, due),) = db.rows("SELECT key, due FROM timers")
            assert (key, due) == (f"xstate.after.{delay}.t.{new_state}", start + fires_at)
            clock.advance(fires_at - 1000 - 1)
            await asyncio.sleep(0.1)
            assert (await bs.get("t", "i")).value == new_state
            clock.advance(1)
            await asyncio.sleep(0.2)
            assert (await bs.get("t", "i")).value == "late"

    run(body)
    assert len(db.rows("SELECT * FROM timers")) == 0


def test_a_state_active_before_and_after_is_not_rearmed() -> None:
    # Its timer fired already (a guard kept it in the state): it fires once, as in XState.
    plan = plan_timers({}, {"t.waiting"}, [("xstate.after.5000.t.waiting", 5000)], 10_000)
    assert (plan.armed, plan.cancelled, plan.kept) == ([], [], [])
    gone = plan_timers({"xstate.after.5000.t.old": 7}, {"t.old"}, [], 10_000)
    assert gone.cancelled == ["xstate.after.5000.t.old"]
    assert gone.warnings() == ["timer xstate.after.5000.t.old is cancelled"]


def test_dry_run_reports_where_the_new_version_diverges(db: Target) -> None:
    # v3 counts moves twice: replaying the history shows the first move as divergent.
    double = assign({"moves": lambda c, e: c["moves"] + 2})
    v3 = create_machine(
        {
            "id": "game",
            "initial": "Playing",
            "context": {"moves": 0},
            "states": {
                "Playing": {
                    "initial": "Awaiting x move",
                    "states": {
                        "Awaiting x move": {
                            "on": {"move": {"target": "Awaiting o move", "actions": double}}
                        },
                        "Awaiting o move": {
                            "on": {"move": {"target": "Awaiting x move", "actions": double}}
                        },
                    },
                }
            },
        }
    )

    async def body() -> None:
        async with Backstate(db.open()) as bs:
            deploy_v1_v2(bs)
            bs.deploy("ttt", v3, version="v3", make_current=False)
            bs.add_migration(
                "ttt",
                "m13",
                "v1",
                "v3",
                rename("Awaiting y move", "Awaiting o move"),
                keep_context,
            )
            await bs.create("ttt", "g")
            for _ in range(3):
                await bs.send("ttt", "g", "move")
            same = await bs.dry_run_upgrade("ttt", "g", "v2")
            assert (same.replayed, same.diverged_at, same.migration_path) == (3, None, ["m12"])
            different = await bs.dry_run_upgrade("ttt", "g", "v3")
            assert (different.replayed, different.diverged_at) == (1, 1)
            assert different.expected == {
                "value": {"Playing": "Awaiting o move"},
                "context": {"moves": 1},
            }
            assert different.actual == {
                "value": {"Playing": "Awaiting o move"},
                "context": {"moves": 2},
            }
            # A dry run changes nothing.
            state = await bs.get("ttt", "g")
            assert (state.version, state.seq, state.desired_version) == ("v1", 3, None)
            json.dumps(different.to_json())

    run(body)
