"""The Store contract: what the runtime may rely on, whichever store it runs on."""

from __future__ import annotations

import threading

import pytest

from backstate.store import (
    DeadLetterRow,
    EffectRow,
    HistoryRow,
    IdempotencyRow,
    InboxRow,
    IndexQuery,
    InstanceRow,
    LogRow,
    RawJson,
    SequenceConflict,
    Store,
    StoreError,
    TimerRow,
    WriteBatch,
)

from .targets import Target


def instance(name: str, seq: int = 0, machine: str = "m") -> InstanceRow:
    return InstanceRow(
        machine, name, "v1", seq, {"value": "a", "context": {}}, "running", None, 1, 1
    )


def test_instances_round_trip_and_list_in_byte_order(store: Store) -> None:
    names = ["b", "B", "a-1", "a_1", "a", "Z9", "0"]
    parent = instance("p")
    parent.children = {"kid": ("other", "k")}
    child = instance("k", machine="other")
    child.parent = ("m", "p")
    store.commit(WriteBatch(instance_creates=[*(instance(n) for n in names), parent, child]))
    loaded = store.load_instance(("m", "p"))
    assert loaded == parent
    assert store.load_instance(("other", "k")) == child
    assert store.load_instance(("m", "nope")) is None
    ordered = sorted([*names, "p"])  # Python sorts str by code point, as SQLite does
    assert [r.name for r in store.list_instances("m", None, 100)] == ordered
    assert [r.name for r in store.list_instances("m", None, 3)] == ordered[:3]
    assert [r.name for r in store.list_instances("m", ordered[2], 3)] == ordered[3:6]
    assert store.list_instances("none", None, 10) == []


def test_history_reads_in_sequence_with_paging_and_raw_json(store: Store) -> None:
    key = ("m", "a")
    store.commit(
        WriteBatch(
            instance_creates=[instance("a")],
            history=[
                (key, HistoryRow(0, RawJson('{"type":"i","s":"é"}'), RawJson('{"v":0}'), 5)),
                (key, HistoryRow(2, {"type": "y"}, {"v": 2}, 7)),
                (key, HistoryRow(1, {"type": "x"}, {"v": 1}, 6)),
            ],
        )
    )
    assert store.history(key, -1, 10) == [
        HistoryRow(0, {"type": "i", "s": "é"}, {"v": 0}, 5),
        HistoryRow(1, {"type": "x"}, {"v": 1}, 6),
        HistoryRow(2, {"type": "y"}, {"v": 2}, 7),
    ]
    assert [h.seq for h in store.history(key, 0, 1)] == [1]
    assert store.history(key, 2, 10) == [] and store.history(("m", "b"), -1, 10) == []


def test_sequence_guard_applies_updates_in_order(store: Store) -> None:
    key = ("m", "a")
    store.commit(WriteBatch(instance_creates=[instance("a")]))
    first, second = instance("a", 1), instance("a", 2)
    second.snapshot = {"value": "b", "context": {"n": 2}}
    second.updated_at = 9
    store.commit(WriteBatch(instance_updates=[(key, 0, first), (key, 1, second)]))
    assert store.load_instance(key) == second
    with pytest.raises(SequenceConflict) as info:
        store.commit(WriteBatch(instance_updates=[(key, 1, instance("a", 3))]))
    assert info.value.code == "sequence-conflict"
    with pytest.raises(SequenceConflict):
        store.commit(WriteBatch(instance_updates=[(("m", "ghost"), 0, instance("ghost", 1))]))


def test_a_batch_is_all_or_nothing(store: Store) -> None:
    store.commit(WriteBatch(instance_creates=[instance("a")]))
    stale = WriteBatch(
        instance_creates=[instance("new")],
        instance_updates=[(("m", "a"), 5, instance("a", 6))],
        history=[(("m", "a"), HistoryRow(6, {"type": "x"}, {"value": "b"}, 2))],
        inbox_inserts=[InboxRow(0, "m", "a", {"type": "y"}, "api", 1, 0, 0)],
        timer_ops=[TimerRow("m", "a", "t", {"type": "z"}, 10, "#_self", 0)],
        logs=[LogRow(1, "m", "v1", "a", "info", "hello")],
    )
    # The sequence guard fails after other rows of the batch were written: all roll back.
    stale.history.insert(0, (("m", "a"), HistoryRow(1, {"type": "x"}, {"value": "b"}, 2)))
    with pytest.raises(SequenceConflict):
        store.commit(stale)
    assert store.history(("m", "a"), -1, 10) == []
    assert store.pending_inbox() == [] and store.pending_timers() == []
    assert store.load_instance(("m", "new")) is None and store.logs(0, 10, None, None, 10) == []
    loaded = store.load_instance(("m", "a"))
    assert loaded is not None and loaded.seq == 0


def test_a_failing_statement_fails_the_whole_batch(store: Store) -> None:
    key = ("m", "a")
    store.commit(
        WriteBatch(instance_creates=[instance("a")], history=[(key, HistoryRow(0, {}, {}, 1))])
    )
    with pytest.raises(StoreError) as info:
        store.commit(
            WriteBatch(
                instance_updates=[(key, 0, instance("a", 1))],
                history=[(key, HistoryRow(0, {"type": "again"}, {}, 2))],  # duplicate seq
                inbox_inserts=[InboxRow(0, "m", "a", {"type": "y"}, "api", 1, 0, 0)],
            )
        )
    assert info.value.code == "store-unavailable"
    with pytest.raises(StoreError):
        store.commit(WriteBatch(instance_creates=[instance("a")]))
    loaded = store.load_instance(key)
    assert loaded is not None and loaded.seq == 0
    assert len(store.history(key, -1, 10)) == 1 and store.pending_inbox() == []
    # The store is still usable.
    store.commit(WriteBatch(instance_updates=[(key, 0, instance("a", 1))]))


def test_concurrent_writers_of_one_instance_never_fork_it(store: Store) -> None:
    key = ("m", "a")
    store.commit(WriteBatch(instance_creates=[instance("a")]))
    outcomes: list[str] = []
    start = threading.Barrier(4)

    def write(n: int) -> None:
        start.wait()
        try:
            store.commit(
                WriteBatch(
                    instance_updates=[(key, 0, instance("a", 1))],
                    history=[(key, HistoryRow(1, {"type": f"w{n}"}, {}, n))],
                )
            )
            outcomes.append("ok")
        except SequenceConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "ok"]
    assert len(store.history(key, -1, 10)) == 1


def test_inbox_ids_order_retries_and_deletes(store: Store) -> None:
    rows = [
        InboxRow(0, "m", "a", {"type": "late"}, "api", 1, 0, 0),
        InboxRow(0, "m", "b", {"type": "urgent"}, "recovery", 0, 0, 0),
        InboxRow(0, "m", "a", {"type": "later"}, "m/x", 1, 0, 0),
    ]
    first = store.commit(WriteBatch(inbox_inserts=rows)).inbox_ids
    second = store.commit(WriteBatch(inbox_inserts=rows[:1])).inbox_ids
    assert len(set(first)) == 3 and first == sorted(first) and second[0] > first[-1]
    pending = store.pending_inbox()
    assert [(r.id, r.event["type"]) for r in pending] == [
        (first[1], "urgent"),
        (first[0], "late"),
        (first[2], "later"),
        (second[0], "late"),
    ]
    assert pending[0] == InboxRow(first[1], "m", "b", {"type": "urgent"}, "recovery", 0, 0, 0)
    # Only the rows added after an id (what a sweep of many nodes reads), same order.
    assert [r.id for r in store.pending_inbox(after_id=first[0])] == [first[1], first[2], second[0]]
    assert store.pending_inbox(after_id=second[0]) == []
    assert store.commit(WriteBatch()).inbox_ids == []
    store.commit(WriteBatch(inbox_retries=[(first[2], 3, 500)], inbox_deletes=[first[1]]))
    pending = store.pending_inbox()
    assert [r.id for r in pending] == [first[0], first[2], second[0]]
    assert (pending[1].attempts, pending[1].not_before) == (3, 500)


def test_timers_schedule_replace_cancel_in_order_and_read_by_due(store: Store) -> None:
    key = ("m", "a")
    row = TimerRow("m", "a", "t", {"type": "z"}, 10, "#_self", 0)
    store.commit(WriteBatch(timer_ops=[row, (key, "t")]))
    assert store.pending_timers() == []
    store.commit(WriteBatch(timer_ops=[(key, "t"), row]))
    assert [t.key for t in store.pending_timers()] == ["t"]
    moved = TimerRow("m", "a", "t", {"type": "z2"}, 30, "m/b", 2)
    store.commit(
        WriteBatch(
            timer_ops=[
                moved,
                TimerRow("m", "b", "u", {"type": "u"}, 20, "#_self", 0),
                TimerRow("m", "c", "v", {"type": "v"}, 5, "#_self", 1),
            ]
        )
    )
    assert store.pending_timers() == [
        TimerRow("m", "c", "v", {"type": "v"}, 5, "#_self", 1),
        TimerRow("m", "b", "u", {"type": "u"}, 20, "#_self", 0),
        moved,
    ]


def test_effects_are_read_in_insertion_order_until_done(store: Store) -> None:
    effects = [
        EffectRow("m/z/1/0", "m", "z", "action", "notify", None),
        EffectRow("m/a/1/0", "m", "a", "service", "fetch", "child"),
        EffectRow("m/a/1/1", "m", "a", "action", "log", None),
    ]
    store.commit(WriteBatch(effect_inserts=effects[:2]))
    store.commit(WriteBatch(effect_inserts=effects[2:]))
    assert store.unfinished_effects() == effects
    store.commit(WriteBatch(effect_done=["m/a/1/0"]))
    assert store.unfinished_effects() == [effects[0], effects[2]]


def test_dead_letters_keep_order_and_can_be_removed(store: Store) -> None:
    letters = [
        DeadLetterRow(0, "m", "a", {"type": f"e{i}"}, "m/x", "guard exploded", 5, 100 + i)
        for i in range(3)
    ]
    store.commit(WriteBatch(dead_letters=letters))
    read = store.dead_letters(10)
    assert [d.event["type"] for d in read] == ["e0", "e1", "e2"]
    assert read[0] == DeadLetterRow(
        read[0].id, "m", "a", {"type": "e0"}, "m/x", "guard exploded", 5, 100
    )
    assert len(store.dead_letters(2)) == 2
    store.commit(WriteBatch(dead_letter_deletes=[read[1].id]))
    assert [d.id for d in store.dead_letters(10)] == [read[0].id, read[2].id]


def test_logs_filter_by_time_machine_and_instance(store: Store) -> None:
    logs = [
        LogRow(10, "m", "v1", "a", "info", "one"),
        LogRow(20, "m", "v1", "b", "error", "two"),
        LogRow(20, "n", "v2", "a", "info", "three"),
        LogRow(30, "m", "v1", "a", "warning", "four"),
    ]
    store.commit(WriteBatch(logs=logs))
    assert store.logs(0, 100, None, None, 10) == logs
    assert [g.message for g in store.logs(20, 30, None, None, 10)] == ["two", "three"]
    assert [g.message for g in store.logs(0, 100, "m", None, 10)] == ["one", "two", "four"]
    assert [g.message for g in store.logs(0, 100, "m", "a", 10)] == ["one", "four"]
    assert [g.message for g in store.logs(0, 100, None, None, 2)] == ["one", "two"]


def test_logs_filter_by_version_and_namespace_before_the_limit(store: Store) -> None:
    # One org's page must not come back short because other orgs' rows filled it.
    logs = [LogRow(i, "org_b.m", "v1", "a", "info", f"b{i}") for i in range(5)]
    logs += [
        LogRow(10, "org_a.m", "v1", "a", "info", "a1"),
        LogRow(11, "org_a.n", "v2", "a", "info", "a2"),
        LogRow(12, "org_a_x.m", "v1", "a", "info", "not org_a"),  # '_' is not a wildcard
    ]
    store.commit(WriteBatch(logs=logs))
    assert [g.message for g in store.logs(0, 100, None, None, 2, namespace="org_a")] == [
        "a1",
        "a2",
    ]
    assert [g.message for g in store.logs(0, 100, None, None, 10, version="v2")] == ["a2"]
    only = store.logs(0, 100, "org_a.m", None, 10, version="v1", namespace="org_a")
    assert [g.message for g in only] == ["a1"]


def test_any_text_from_user_code_can_be_stored(store: Store) -> None:
    # print() output and error messages are user-controlled: NUL, emoji, quotes.
    message = "a\x00b 🦆 '; DROP TABLE logs; --"
    store.commit(
        WriteBatch(
            logs=[LogRow(1, "m", "v1", "a", "info", message)],
            dead_letters=[DeadLetterRow(0, "m", "a", {"type": "x\x00"}, "m/b", message, 5, 1)],
        )
    )
    [log] = store.logs(0, 10, None, None, 10)
    assert log.message.startswith("a") and log.message.endswith("🦆 '; DROP TABLE logs; --")
    [letter] = store.dead_letters(10)
    assert letter.event == {"type": "x\x00"}  # JSON escapes NUL, so events keep it


def test_status_updates_and_versions(store: Store, target: Target) -> None:
    store.commit(WriteBatch(instance_creates=[instance("a")]))
    store.commit(WriteBatch(status_updates=[(("m", "a"), "paused")]))
    loaded = store.load_instance(("m", "a"))
    assert loaded is not None and loaded.status == "paused"
    store.record_version("m", "v1", 5)
    store.record_version("m", "v1", 6)
    store.record_version("m", "v2", 7)
    assert target.rows("SELECT version, created_at FROM machine_versions ORDER BY version") == [
        ("v1", 5),
        ("v2", 7),
    ]


def test_desired_versions_are_written_with_creates_updates_and_on_their_own(
    store: Store,
) -> None:
    key = ("m", "a")
    created = instance("a")
    created.desired_version = "v2"
    store.commit(WriteBatch(instance_creates=[created, instance("b")]))
    assert store.load_instance(key) == created
    store.commit(WriteBatch(desired_updates=[(key, "v3"), (("m", "b"), "v2"), (key, None)]))
    loaded = store.load_instance(key)
    assert loaded is not None and loaded.desired_version is None
    assert [r.desired_version for r in store.list_instances("m", None, 10)] == [None, "v2"]
    upgraded = instance("a", 1)
    upgraded.desired_version = "v4"
    store.commit(WriteBatch(instance_updates=[(key, 0, upgraded)]))
    assert store.load_instance(key) == upgraded


def test_index_entries_replace_an_instances_previous_ones_and_page_in_order(
    store: Store,
) -> None:
    names = ["a", "b", "c", "d"]
    store.commit(WriteBatch(instance_creates=[instance(n) for n in names]))
    store.commit(
        WriteBatch(
            index_puts=[
                (("m", "a"), frozenset({("score", 0, 10.0, ""), ("tag", 1, 0.0, "Zed")})),
                (("m", "b"), frozenset({("score", 0, 2.5, ""), ("tag", 1, 0.0, "alpha")})),
                (("m", "c"), frozenset({("score", 0, 10.0, "")})),
                (("m", "d"), frozenset({("score", 1, 0.0, "ten")})),
                (("m", "c"), frozenset({("score", 0, -1.0, "")})),  # the last put wins
            ]
        )
    )

    def page(**kw: object) -> list[tuple[object, str]]:
        hits = store.query_index(IndexQuery("m", "score", **kw))  # type: ignore[arg-type]
        return [(h.value, h.instance) for h in hits]

    assert page() == [(-1, "c"), (2.5, "b"), (10, "a"), ("ten", "d")]
    assert page(descending=True, limit=2) == [("ten", "d"), (10, "a")]
    assert page(op="gte", kind=0, value=2.5) == [(2.5, "b"), (10, "a")]
    assert page(op="eq", kind=1, value="ten") == [("ten", "d")]
    assert page(after=(0, 2.5, "", "b")) == [(10, "a"), ("ten", "d")]
    tags = store.query_index(IndexQuery("m", "tag"))
    assert [h.value for h in tags] == ["Zed", "alpha"]  # byte order, as SQLite sorts
    store.commit(WriteBatch(index_puts=[(("m", "a"), frozenset())]))
    assert page() == [(-1, "c"), (2.5, "b"), ("ten", "d")]
    store.commit(WriteBatch(instance_deletes=[("m", "b")]))
    assert page() == [(-1, "c"), ("ten", "d")]
    assert store.query_index(IndexQuery("other", "score")) == []


def test_delete_removes_all_rows_of_an_instance(store: Store) -> None:
    key = ("m", "a")
    store.commit(
        WriteBatch(
            instance_creates=[instance("a"), instance("b")],
            history=[
                (key, HistoryRow(0, {"type": "i"}, {}, 1)),
                (("m", "b"), HistoryRow(0, {"type": "i"}, {}, 1)),
            ],
            inbox_inserts=[InboxRow(0, "m", "a", {"type": "y"}, "api", 1, 0, 0)],
            timer_ops=[TimerRow("m", "a", "t", {"type": "z"}, 10, "#_self", 0)],
            effect_inserts=[EffectRow("m/a/0/0", "m", "a", "action", "x", None)],
        )
    )
    store.commit(WriteBatch(instance_deletes=[key]))
    assert store.load_instance(key) is None and store.history(key, -1, 10) == []
    assert store.pending_inbox() == [] and store.pending_timers() == []
    assert store.unfinished_effects() == []
    assert (
        store.load_instance(("m", "b")) is not None and len(store.history(("m", "b"), -1, 10)) == 1
    )


def test_reopening_keeps_everything_and_refuses_a_newer_schema(
    store: Store, target: Target
) -> None:
    store.commit(WriteBatch(instance_creates=[instance("a")]))
    store.close()
    reopened = target.open()
    assert reopened.load_instance(("m", "a")) == instance("a")
    reopened.close()
    [(current,)] = target.rows("SELECT version FROM schema_version")
    target.rows("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="99"):
        target.open()
    target.rows("UPDATE schema_version SET version = ?", current)
    target.open().close()


def test_idempotency_keys_are_read_many_at_once(store: Store) -> None:
    # More pairs than one SQLite statement takes, with repeats and misses among them.
    rows = [IdempotencyRow("m", f"i{n % 7}", f"k{n}", f"f{n}", "v1", n, 10) for n in range(250)]
    store.commit(
        WriteBatch(instance_creates=[instance(f"i{n}") for n in range(7)], idempotency_puts=rows)
    )
    wanted = [((r.machine, r.instance), r.key) for r in rows]
    missing = [(("m", "i0"), "k1"), (("m", "nobody"), "k0"), (("other", "i0"), "k0")]
    found = store.idempotency_keys([*wanted, *missing, *wanted[:30]])
    assert found == {pair: row for pair, row in zip(wanted, rows, strict=True)}
    assert store.idempotency_keys([]) == {}


def test_idempotency_keys_are_written_answered_expired_and_deleted(store: Store) -> None:
    key = ("m", "a")
    row = IdempotencyRow("m", "a", "k", "f1", "v1", 0, 10)
    store.commit(WriteBatch(instance_creates=[instance("a")], idempotency_puts=[row]))
    assert store.idempotency_key(key, "k") == row
    assert store.idempotency_key(key, "K") is None
    assert store.idempotency_key(("m", "b"), "k") is None
    store.commit(WriteBatch(idempotency_answers=[(key, "k", "v2", 3)]))
    assert store.idempotency_key(key, "k") == IdempotencyRow("m", "a", "k", "f1", "v2", 3, 10)
    # A key written again (once expired) replaces its row.
    store.commit(WriteBatch(idempotency_puts=[IdempotencyRow("m", "a", "k", "f2", "v1", 4, 20)]))
    assert store.idempotency_key(key, "k") == IdempotencyRow("m", "a", "k", "f2", "v1", 4, 20)
    store.commit(WriteBatch(idempotency_puts=[IdempotencyRow("m", "a", "old", "f", "v1", 1, 5)]))
    assert store.expire_idempotency_keys(10) == 1
    assert store.idempotency_key(key, "old") is None
    store.commit(WriteBatch(instance_deletes=[key]))
    assert store.idempotency_key(key, "k") is None
