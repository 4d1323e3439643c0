"""What only the SQLite store has: WAL, durability settings, one writer at a time.
(The contract both stores keep is in test_contract.py.)"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from backstate.store import (
    InstanceRow,
    SQLiteStore,
    StoreError,
    WriteBatch,
)
from backstate.store._sqlite import MIGRATIONS


def instance(name: str, seq: int = 0) -> InstanceRow:
    return InstanceRow("m", name, "v1", seq, {"value": "a", "context": {}}, "running", None, 1, 1)


def test_opens_in_wal_with_full_sync_and_current_schema(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    assert store.schema_version == len(MIGRATIONS)
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert store._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    store.close()
    reopened = SQLiteStore(tmp_path / "s.db", synchronous="NORMAL")
    assert reopened.schema_version == len(MIGRATIONS)
    reopened.close()


def test_refuses_a_newer_schema_and_bad_settings(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "s.db").close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="schema 99"):
        SQLiteStore(tmp_path / "s.db")
    with pytest.raises(ValueError):
        SQLiteStore(tmp_path / "t.db", synchronous="SOMETIMES")


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
