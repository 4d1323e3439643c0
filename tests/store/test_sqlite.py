"""The SQLite store: schema migrations, atomic batches, durability settings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from backstate.store import (
    HistoryRow,
    InboxRow,
    InstanceRow,
    SequenceConflict,
    SQLiteStore,
    StoreError,
    TimerRow,
    WriteBatch,
)


def instance(name: str, seq: int = 0) -> InstanceRow:
    return InstanceRow("m", name, "v1", seq, {"value": "a", "context": {}}, "running", None, 1, 1)


def test_opens_in_wal_with_full_sync_and_current_schema(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    assert store.schema_version == 1
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert store._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    store.close()
    reopened = SQLiteStore(tmp_path / "s.db", synchronous="NORMAL")
    assert reopened.schema_version == 1
    reopened.close()


def test_refuses_a_newer_schema_and_bad_settings(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "s.db").close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="schema 99"):
        SQLiteStore(tmp_path / "s.db")
    with pytest.raises(ValueError):
        SQLiteStore(tmp_path / "t.db", synchronous="SOMETIMES")


def test_a_batch_is_all_or_nothing(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    store.commit(WriteBatch(instance_creates=[instance("a")]))
    stale = WriteBatch(
        instance_updates=[(("m", "a"), 5, instance("a", 6))],
        history=[(("m", "a"), HistoryRow(6, {"type": "x"}, {"value": "b"}, 2))],
        inbox_inserts=[InboxRow(0, "m", "a", {"type": "y"}, "api", 1, 0, 0)],
        timer_ops=[TimerRow("m", "a", "t", {"type": "z"}, 10, "#_self", 0)],
    )
    # The sequence guard fails after other rows of the batch were written: all roll back.
    stale.history.insert(0, (("m", "a"), HistoryRow(1, {"type": "x"}, {"value": "b"}, 2)))
    with pytest.raises(SequenceConflict):
        store.commit(stale)
    assert store.history(("m", "a"), -1, 10) == []
    assert store.pending_inbox() == [] and store.pending_timers() == []
    loaded = store.load_instance(("m", "a"))
    assert loaded is not None and loaded.seq == 0
    store.close()


def test_timer_operations_apply_in_order(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    key = ("m", "a")
    row = TimerRow("m", "a", "t", {"type": "z"}, 10, "#_self", 0)
    store.commit(WriteBatch(timer_ops=[row, (key, "t")]))
    assert store.pending_timers() == []
    store.commit(WriteBatch(timer_ops=[(key, "t"), row]))
    assert [t.key for t in store.pending_timers()] == ["t"]
    store.close()


def test_a_second_writer_fails_cleanly_instead_of_corrupting(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db", busy_timeout_ms=50)
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreError, match="locked"):
        store.commit(WriteBatch(instance_creates=[instance("a")]))
    other.execute("ROLLBACK")
    store.commit(WriteBatch(instance_creates=[instance("a")]))
    assert store.load_instance(("m", "a")) is not None
    store.close()
    other.close()


def test_delete_removes_all_rows_of_an_instance(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
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
        )
    )
    store.commit(WriteBatch(instance_deletes=[key]))
    assert store.load_instance(key) is None and store.history(key, -1, 10) == []
    assert store.pending_inbox() == [] and store.pending_timers() == []
    assert (
        store.load_instance(("m", "b")) is not None and len(store.history(("m", "b"), -1, 10)) == 1
    )
    store.close()
