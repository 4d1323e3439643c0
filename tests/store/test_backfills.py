"""Added indexes and their backfills (store/_backfills), on SQLite and PostgreSQL: the
cursor and the entries move in one transaction, only the lease holder writes, and a
step that raises writes nothing."""

from __future__ import annotations

import json
import time

import pytest

from backstate.store import IndexEntry, IndexQuery, InstanceRow, Store, WriteBatch


def instance(name: str, color: str, machine: str = "m") -> InstanceRow:
    snapshot = {"value": "a", "context": {"color": color}}
    return InstanceRow(machine, name, "v1", 0, snapshot, "running", None, 1, 1)


def colors(
    rows: list[tuple[str, str, str]],
) -> tuple[list[tuple[str, frozenset[IndexEntry]]], list[str]]:
    out = []
    for name, _, snapshot in rows:
        color = json.loads(snapshot)["context"]["color"]
        out.append((name, frozenset({("color", 1, 0.0, color)})))
    return out, []


def hits(store: Store, index: str = "color") -> list[tuple[object, str]]:
    return [(h.value, h.instance) for h in store.query_index(IndexQuery("m", index, limit=1000))]


def test_add_is_recorded_once_with_the_instances_to_walk(store: Store) -> None:
    store.commit(WriteBatch(instance_creates=[instance(n, "red") for n in "abc"]))
    row = store.add_index("m", "color", "$.color")
    assert row is not None
    assert (row.state, row.after, row.done, row.total, row.selector) == (
        "backfilling",
        "",
        0,
        3,
        "$.color",
    )
    assert store.add_index("m", "color", "$.other") is None
    assert store.index_backfills("m") == [row]
    assert store.index_backfills() == [row]
    assert store.index_backfills("other") == []


def test_steps_walk_in_key_order_and_finish(store: Store) -> None:
    names = ["e", "a", "d", "b", "c"]
    store.commit(WriteBatch(instance_creates=[instance(n, f"c-{n}") for n in names]))
    # An entry of another index of the same instance stays as it is.
    store.commit(WriteBatch(index_puts=[(("m", "a"), frozenset({("other", 1, 0.0, "x")}))]))
    store.add_index("m", "color", "$.color")
    assert store.claim_backfill("m", "color", "n1", 5000, 0)
    first = store.backfill_step("m", "color", "n1", 2, colors, 5000)
    assert first is not None
    assert (first.after, first.done, first.state) == ("b", 2, "backfilling")
    assert hits(store) == [("c-a", "a"), ("c-b", "b")]
    second = store.backfill_step("m", "color", "n1", 2, colors, 5000)
    third = store.backfill_step("m", "color", "n1", 2, colors, 5000)
    assert second is not None and third is not None
    assert (third.after, third.done, third.total, third.state) == ("e", 5, 5, "ready")
    assert hits(store) == [(f"c-{n}", n) for n in sorted(names)]
    assert hits(store, "other") == [("x", "a")]
    # A finished backfill takes no more steps.
    assert store.backfill_step("m", "color", "n1", 2, colors, 5000) is None


def test_only_the_lease_holder_steps(store: Store) -> None:
    store.commit(WriteBatch(instance_creates=[instance("a", "red")]))
    store.add_index("m", "color", "$.color")
    assert not store.claim_backfill("m", "color", "n1", 5000, 60_000)  # too young yet
    assert store.claim_backfill("m", "color", "n1", 200, 0)
    assert not store.claim_backfill("m", "color", "n2", 5000, 0)
    assert store.backfill_step("m", "color", "n2", 10, colors, 5000) is None
    assert hits(store) == []
    time.sleep(0.3)  # n1's lease runs out: n2 takes over, n1 writes nothing more
    assert store.claim_backfill("m", "color", "n2", 5000, 0)
    assert store.backfill_step("m", "color", "n1", 10, colors, 5000) is None
    done = store.backfill_step("m", "color", "n2", 10, colors, 5000)
    assert done is not None and done.state == "ready"


def test_a_step_that_raises_writes_nothing_and_a_failure_is_recorded(store: Store) -> None:
    store.commit(WriteBatch(instance_creates=[instance(n, "red") for n in "ab"]))
    store.add_index("m", "color", "$.color")
    assert store.claim_backfill("m", "color", "n1", 5000, 0)

    def broken(
        rows: list[tuple[str, str, str]],
    ) -> tuple[list[tuple[str, frozenset[IndexEntry]]], list[str]]:
        raise ValueError("instance a: no")

    with pytest.raises(ValueError):
        store.backfill_step("m", "color", "n1", 10, broken, 5000)
    (row,) = store.index_backfills("m")
    assert (row.after, row.done, row.state) == ("", 0, "backfilling")
    assert hits(store) == []
    store.fail_backfill("m", "color", "n1", "instance a: no")
    (row,) = store.index_backfills("m")
    assert (row.state, row.error) == ("failed", "instance a: no")
    assert not store.claim_backfill("m", "color", "n1", 5000, 0)


def test_skipped_values_are_counted_and_the_first_is_kept(store: Store) -> None:
    store.commit(WriteBatch(instance_creates=[instance(n, "red") for n in "abc"]))
    store.add_index("m", "color", "$.color")
    assert store.claim_backfill("m", "color", "n1", 5000, 0)

    def skipping(
        rows: list[tuple[str, str, str]],
    ) -> tuple[list[tuple[str, frozenset[IndexEntry]]], list[str]]:
        return [(r[0], frozenset()) for r in rows], [f"instance {r[0]}: not a string" for r in rows]

    store.backfill_step("m", "color", "n1", 2, skipping, 5000)
    row = store.backfill_step("m", "color", "n1", 2, skipping, 5000)
    assert row is not None
    assert (row.state, row.skipped, row.skip_note) == ("ready", 3, "instance a: not a string")


def test_drop_forgets_a_machines_indexes(store: Store) -> None:
    store.add_index("m", "color", "$.color")
    store.add_index("n", "color", "$.color")
    store.drop_indexes("m")
    assert [r.machine for r in store.index_backfills()] == ["n"]
