"""Indexes added to a machine with instances (runtime/_backfill), on SQLite and
PostgreSQL: the backfill indexes every existing instance once, transitions racing it
are indexed exactly once with their latest values, a restart goes on from the cursor,
and bad requests change nothing."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from backstate.chart import assign, setup
from backstate.runtime import Backstate, Conflict, InvalidRequest, NotFound, _backfill
from tests.store.targets import Target

PAINTER = {
    "initial": "idle",
    "context": {"color": "none"},
    "states": {
        "idle": {
            "on": {
                "paint": {"actions": assign({"color": lambda c, e: e["color"]})},
                "go": "busy",
            }
        },
        "busy": {"on": {"stop": "idle"}},
    },
}


def painter() -> Any:
    return setup().create_machine(PAINTER)


@pytest.fixture(autouse=True)
def no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_backfill, "GRACE_MS", 0)


async def ready(bs: Backstate, machine: str, name: str, seconds: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        (row,) = [r for r in await bs.added_indexes(machine) if r.name == name]
        if row.state != "backfilling":
            return row
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still backfilling: {row}")
        await asyncio.sleep(0.02)


async def everything(bs: Backstate, machine: str, index: str) -> list[tuple[Any, str]]:
    hits: list[tuple[Any, str]] = []
    cursor = None
    while True:
        page = await bs.query(machine, index, limit=1000, cursor=cursor)
        hits.extend(page.hits)
        if page.cursor is None:
            return hits
        cursor = page.cursor


def test_existing_instances_are_all_found_once_the_backfill_is_done(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open(), backfill_batch=7) as bs:
            bs.deploy("painter", painter())
            for n in range(30):
                await bs.create("painter", f"p{n:02}", context={"color": f"c{n % 3}"})
            await bs.send("painter", "p05", {"type": "go"})
            row = await bs.add_index("painter", "color", "$.color")
            assert (row.state, row.done, row.total) == ("backfilling", 0, 30)
            with pytest.raises(Conflict) as not_ready:
                await bs.query("painter", "color")
            assert not_ready.value.code == "index-not-ready"
            state_row = await bs.add_index("painter", "where", "@state")
            assert state_row.state == "backfilling"
            row = await ready(bs, "painter", "color")
            assert (row.state, row.done, row.total, row.skipped, row.after) == (
                "ready",
                30,
                30,
                0,
                "p29",
            )
            hits = await everything(bs, "painter", "color")
            assert sorted(name for _, name in hits) == [f"p{n:02}" for n in range(30)]
            assert all(value == f"c{int(name[1:]) % 3}" for value, name in hits)
            page = await bs.query("painter", "color", op="eq", value="c1")
            assert [name for _, name in page.hits] == [f"p{n:02}" for n in range(1, 30, 3)]
            await ready(bs, "painter", "where")
            busy = await bs.query("painter", "where", op="eq", value="busy")
            assert busy.hits == [("busy", "p05")]

    asyncio.run(body())


def test_transitions_racing_the_backfill_are_indexed_exactly_once(db: Target) -> None:
    async def body() -> None:
        rng = random.Random(7)
        latest: dict[str, str] = {}
        async with Backstate(db.open(), backfill_batch=4, backfill_pause=0.01) as bs:
            bs.deploy("painter", painter())
            for n in range(60):
                await bs.create("painter", f"p{n:02}", context={"color": "old"})
                latest[f"p{n:02}"] = "old"
            await bs.add_index("painter", "color", "$.color")
            k = 0
            while (await bs.added_indexes("painter"))[0].state == "backfilling":
                name = rng.choice(sorted(latest))
                k += 1
                await bs.send("painter", name, {"type": "paint", "color": f"new{k}"})
                latest[name] = f"new{k}"
                if k % 5 == 0:  # instances created while the backfill runs, too
                    await bs.create("painter", f"q{k:03}", context={"color": "fresh"})
                    latest[f"q{k:03}"] = "fresh"
            assert k > 10, "the backfill ended before the race began"
            hits = await everything(bs, "painter", "color")
            names = [name for _, name in hits]
            assert len(names) == len(set(names)), "an instance is indexed twice"
            assert dict((name, value) for value, name in hits) == latest

    asyncio.run(body())


def test_a_restart_goes_on_from_the_cursor(db: Target) -> None:
    """(A SIGKILL, whose lease has to run out first: tests/server/test_indexes.py.)"""

    async def body() -> None:
        async with Backstate(db.open(), backfill_batch=3, backfill_pause=0.05) as bs:
            bs.deploy("painter", painter())
            for n in range(40):
                await bs.create("painter", f"p{n:02}", context={"color": f"c{n}"})
            await bs.add_index("painter", "color", "$.color")
            while (await bs.added_indexes("painter"))[0].done < 6:
                await asyncio.sleep(0.01)
        (stopped,) = [r for r in db.rows("SELECT done, state FROM index_backfills")]
        assert stopped[1] == "backfilling" and 6 <= stopped[0] < 40
        # A clean close released the lease: the next start goes on at once.
        async with Backstate(db.open(), backfill_batch=10) as bs:
            bs.deploy("painter", painter())
            row = await ready(bs, "painter", "color")
            assert (row.done, row.total) == (40, 40)
            hits = await everything(bs, "painter", "color")
            assert sorted(hits) == sorted((f"c{n}", f"p{n:02}") for n in range(40))

    asyncio.run(body())


def test_values_that_cannot_be_indexed_are_counted_and_named(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("painter", painter())
            await bs.create("painter", "a", context={"color": "red"})
            await bs.create("painter", "b", context={"color": {"not": "a string"}})
            await bs.add_index("painter", "color", "$.color")
            row = await ready(bs, "painter", "color")
            assert (row.state, row.done, row.skipped) == ("ready", 2, 1)
            assert row.skip_note is not None and "instance 'b'" in row.skip_note
            assert (await bs.query("painter", "color")).hits == [("red", "a")]

    asyncio.run(body())


def test_a_version_naming_the_added_index_uses_its_own_selector(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("painter", painter())
            await bs.create("painter", "a", context={"color": "red", "hue": "warm"})
            await bs.add_index("painter", "color", "$.color")
            await ready(bs, "painter", "color")
            bs.deploy("painter", painter(), version="v2", indexes={"color": "$.hue"})
            await bs.create("painter", "b", context={"color": "blue", "hue": "cold"})
            await bs.send("painter", "a", {"type": "paint", "color": "green"})
            hits = (await bs.query("painter", "color")).hits
            assert sorted(hits) == [("cold", "b"), ("green", "a")]

    asyncio.run(body())


def test_bad_requests_change_nothing(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("painter", painter(), indexes={"own": "$.color"})
            await bs.create("painter", "a")
            cases: list[tuple[str, str, str, type[Exception], str]] = [
                ("painter", "bad name", "$.color", InvalidRequest, "invalid-name"),
                ("painter", "color", "$[", InvalidRequest, "invalid-index-selector"),
                ("nobody", "color", "$.color", NotFound, "machine-not-found"),
                ("painter", "own", "$.color", Conflict, "index-exists"),
            ]
            for machine, name, selector, error, code in cases:
                with pytest.raises(error) as raised:
                    await bs.add_index(machine, name, selector)
                assert raised.value.code == code  # type: ignore[attr-defined]
            assert db.rows("SELECT count(*) FROM index_backfills") == [(0,)]
            await bs.add_index("painter", "color", "$.color")
            with pytest.raises(Conflict) as again:
                await bs.add_index("painter", "color", "$.other")
            assert again.value.code == "index-exists"
            (row,) = await bs.added_indexes("painter")
            assert row.selector == "$.color"

    asyncio.run(body())


def test_a_failed_backfill_is_retried_by_adding_it_again_once_mended(db: Target) -> None:
    """An instance whose stored state cannot be read fails the backfill, naming it;
    adding the index again with its selector resumes from that instance, and with
    another selector is refused."""

    async def body() -> None:
        async with Backstate(db.open(), backfill_batch=2) as bs:
            bs.deploy("painter", painter())
            for n in range(6):
                await bs.create("painter", f"p{n}", context={"color": f"c{n}"})
            where = "WHERE machine = ? AND name = ?"
            ((good,),) = db.rows(f"SELECT snapshot FROM instances {where}", "painter", "p3")
            db.rows(f"UPDATE instances SET snapshot = ? {where}", "{not json", "painter", "p3")
            await bs.add_index("painter", "color", "$.color")
            failed = await ready(bs, "painter", "color")
            assert failed.state == "failed" and "'p3'" in (failed.error or ""), failed
            with pytest.raises(Conflict) as not_ready:
                await bs.query("painter", "color")
            assert not_ready.value.code == "index-not-ready"
            assert "could not be backfilled" in not_ready.value.message
            with pytest.raises(Conflict) as other:
                await bs.add_index("painter", "color", "$.other")
            assert other.value.code == "index-exists"
            # Added again while p3 is still unreadable: it fails again, at p3.
            again = await bs.add_index("painter", "color", "$.color")
            assert (again.state, again.error) == ("backfilling", None)
            assert (await ready(bs, "painter", "color")).state == "failed"
            db.rows(f"UPDATE instances SET snapshot = ? {where}", good, "painter", "p3")
            resumed = await bs.add_index("painter", "color", "$.color")
            assert resumed.state == "backfilling" and resumed.done == failed.done > 0
            done = await ready(bs, "painter", "color")
            assert (done.state, done.done, done.total, done.error) == ("ready", 6, 6, None)
            hits = await everything(bs, "painter", "color")
            assert sorted(hits) == [(f"c{n}", f"p{n}") for n in range(6)]
            with pytest.raises(Conflict) as ready_exists:
                await bs.add_index("painter", "color", "$.color")
            assert ready_exists.value.code == "index-exists"

    asyncio.run(body())
