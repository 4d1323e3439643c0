"""Secondary indexes over instance context and active states, on SQLite and
PostgreSQL (the ``db`` fixture): written with the transition, queried by range."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from backstate.chart import assign, create_machine
from backstate.runtime import Backstate, InvalidRequest
from tests.store.targets import Target


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


ORDER = create_machine(
    {
        "id": "order",
        "initial": "open",
        "context": {"owner": "", "total": 0, "public": {"tags": []}},
        "states": {
            "open": {
                "on": {
                    "set": {"actions": assign(lambda c, e: {**c, **e["context"]})},
                    "ship": "shipped",
                }
            },
            "shipped": {"on": {"set": {"actions": assign(lambda c, e: {**c, **e["context"]})}}},
        },
    }
)

SELECTORS = {
    "owner": "$.owner",
    "total": "$.total",
    "tags": "$.public.tags",
    "phase": "@state",
}


async def orders(bs: Backstate, *contexts: dict[str, Any]) -> None:
    bs.deploy("order", ORDER, indexes=SELECTORS)
    for i, context in enumerate(contexts):
        await bs.create("order", f"o{i}")
        await bs.send("order", f"o{i}", {"type": "set", "context": context})


async def hits(bs: Backstate, index: str, **kw: Any) -> list[tuple[Any, str]]:
    return (await bs.query("order", index, **kw)).hits


def test_every_operator_on_strings_and_numbers(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            await orders(
                bs,
                {"owner": "ann", "total": 10},
                {"owner": "bob", "total": 2.5},
                {"owner": "cat", "total": 30},
            )
            assert await hits(bs, "owner", op="eq", value="bob") == [("bob", "o1")]
            assert await hits(bs, "owner", op="ne", value="bob") == [("ann", "o0"), ("cat", "o2")]
            assert await hits(bs, "owner", op="gt", value="ann") == [("bob", "o1"), ("cat", "o2")]
            assert await hits(bs, "owner", op="gte", value="bob") == [("bob", "o1"), ("cat", "o2")]
            assert await hits(bs, "owner", op="lt", value="bob") == [("ann", "o0")]
            assert await hits(bs, "owner", op="lte", value="bob") == [("ann", "o0"), ("bob", "o1")]
            # Numbers compare as numbers (10 > 2.5), not as text.
            assert await hits(bs, "total", op="gt", value=5) == [(10, "o0"), (30, "o2")]
            assert await hits(bs, "total", op="lte", value=10) == [(2.5, "o1"), (10, "o0")]
            assert await hits(bs, "total", op="eq", value=30) == [(30, "o2")]
            # A string value compares with string entries only.
            assert await hits(bs, "total", op="eq", value="30") == []
            assert await hits(bs, "owner", descending=True) == [
                ("cat", "o2"),
                ("bob", "o1"),
                ("ann", "o0"),
            ]

    run(body)


def test_pages_follow_the_cursor_in_both_directions(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            await orders(bs, *({"owner": "same", "total": i % 3} for i in range(7)))
            for descending in (False, True):
                seen: list[tuple[Any, str]] = []
                cursor = None
                while True:
                    page = await bs.query(
                        "order", "total", descending=descending, limit=3, cursor=cursor
                    )
                    seen.extend(page.hits)
                    cursor = page.cursor
                    if cursor is None:
                        break
                everything = sorted(((i % 3, f"o{i}") for i in range(7)), reverse=descending)
                assert seen == everything
            page = await bs.query("order", "owner", op="eq", value="same", limit=7)
            assert len(page.hits) == 7

    run(body)


def test_arrays_index_each_element_and_state_strings_are_indexed(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            await orders(bs, {"public": {"tags": ["red", "big"]}}, {"public": {"tags": ["red"]}})
            assert await hits(bs, "tags", op="eq", value="red") == [("red", "o0"), ("red", "o1")]
            assert await hits(bs, "tags", op="eq", value="big") == [("big", "o0")]
            await bs.send("order", "o1", "ship")
            assert await hits(bs, "phase", op="eq", value="shipped") == [("shipped", "o1")]
            assert await hits(bs, "phase", op="eq", value="open") == [("open", "o0")]
            # Changing the context moves the entries with it.
            await bs.send("order", "o0", {"type": "set", "context": {"public": {"tags": []}}})
            assert await hits(bs, "tags") == [("red", "o1")]

    run(body)


def test_values_that_cannot_be_indexed_are_skipped_and_logged(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            await orders(bs, {"owner": {"name": "ann"}, "total": True})
            state = await bs.get("order", "o0")
            assert state.context["owner"] == {"name": "ann"}  # the transition happened
            assert await hits(bs, "owner") == []
            assert await hits(bs, "total") == []
            logs = [log.message for log in await bs.logs(machine="order") if log.level == "warning"]
            assert any("index 'owner'" in m and "not indexed" in m for m in logs), logs
            assert any("index 'total'" in m for m in logs), logs

    run(body)


@pytest.mark.parametrize(
    "selectors",
    [{"owner": "$.["}, {"owner": 3}, {"bad name": "$.owner"}, ["$.owner"]],
)
def test_bad_selectors_are_refused_at_deploy(db: Target, selectors: Any) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            with pytest.raises(InvalidRequest) as info:
                bs.deploy("order", ORDER, indexes=selectors)
            assert info.value.code == "invalid-index-selector"

    run(body)


@pytest.mark.parametrize(
    "query",
    [
        {"op": "eq"},
        {"value": "x"},
        {"op": "like", "value": "x"},
        {"op": "eq", "value": float("nan")},
        {"limit": 0},
        {"limit": 1001},
        {"cursor": "not-a-cursor"},
    ],
)
def test_bad_queries_get_clear_errors(db: Target, query: dict[str, Any]) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("order", ORDER, indexes=SELECTORS)
            with pytest.raises(InvalidRequest) as info:
                await bs.query("order", "owner", **query)
            assert info.value.code == "invalid-parameter"

    run(body)


def test_entries_commit_with_their_transition_or_not_at_all(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            await orders(bs, {"owner": "ann"})
            # A history row already at the next sequence number makes the next commit
            # fail after the index entries were written in it: all of it rolls back.
            snapshot = db.rows("SELECT snapshot FROM history WHERE seq = 1")[0][0]
            db.rows(
                "INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)",
                "order",
                "o0",
                2,
                json.dumps({"type": "x"}),
                snapshot,
                0,
            )
            with pytest.raises(Exception) as info:
                await bs.send("order", "o0", {"type": "set", "context": {"owner": "zed"}})
            assert getattr(info.value, "code", None) == "store-unavailable"

    run(body)
    entries = db.rows("SELECT str, instance FROM instance_index WHERE idx = 'owner'")
    assert entries == [("ann", "o0")]
    assert db.rows("SELECT seq FROM instances") == [(1,)]


def test_deleting_an_instance_deletes_its_entries(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            await orders(bs, {"owner": "ann"}, {"owner": "bob"})
            await bs.delete("order", "o0")
            assert await hits(bs, "owner") == [("bob", "o1")]

    run(body)
    assert len(db.rows("SELECT * FROM instance_index WHERE instance = 'o0'")) == 0


def test_an_upgrade_rewrites_entries_with_the_new_selectors(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("order", ORDER, version="v1", indexes={"who": "$.owner"})
            bs.deploy("order", ORDER, version="v2", make_current=False, indexes={"sum": "$.total"})
            bs.add_migration("order", "m", "v1", "v2", lambda p, c: p, lambda o, n, c: c)
            await bs.create("order", "o")
            await bs.send("order", "o", {"type": "set", "context": {"owner": "ann", "total": 4}})
            assert (await bs.query("order", "who")).hits == [("ann", "o")]
            await bs.set_desired_version("order", "o", "v2", now=True)
            assert (await bs.query("order", "who")).hits == []
            assert (await bs.query("order", "sum")).hits == [(4, "o")]

    run(body)
