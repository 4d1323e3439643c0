"""Index pages are range seeks on the primary key, never scans or sorts: every shape
of query, first page and cursor pages, on the real SQLite schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from backstate.store import IndexQuery, SQLiteStore, WriteBatch
from backstate.store._indexes import index_query_sql

STRING, NUMBER = 1, 0
CASES = [
    IndexQuery("m", "owner", "eq", STRING, "o7"),
    IndexQuery("m", "owner", "eq", STRING, "o7", after=(STRING, 0.0, "o7", "i1")),
    IndexQuery("m", "owner", "eq", STRING, "o7", descending=True, after=(STRING, 0.0, "o7", "i9")),
    IndexQuery("m", "owner", "gte", STRING, "o3", after=(STRING, 0.0, "o4", "i4")),
    IndexQuery("m", "owner", "lt", STRING, "o3", descending=True, after=(STRING, 0.0, "o2", "i2")),
    IndexQuery("m", "owner", "lt", STRING, "o3"),
    IndexQuery("m", "total", "eq", NUMBER, 5.0, after=(NUMBER, 5.0, "", "i5")),
    IndexQuery("m", "total", "gt", NUMBER, 5.0),
    IndexQuery("m", "total", "gte", NUMBER, 5.0, after=(NUMBER, 6.0, "", "i6")),
    IndexQuery("m", "total", "lte", NUMBER, 5.0, descending=True, after=(NUMBER, 4.0, "", "i4")),
    IndexQuery("m", "total"),
    IndexQuery("m", "total", after=(NUMBER, 6.0, "", "i6")),
    IndexQuery("m", "total", descending=True, after=(NUMBER, 6.0, "", "i6")),
]


@pytest.mark.parametrize("query", CASES, ids=lambda q: f"{q.op}-{q.descending}-{bool(q.after)}")
def test_every_page_is_a_primary_key_seek(tmp_path: Path, query: IndexQuery) -> None:
    path = tmp_path / "a.db"
    store = SQLiteStore(path)
    batch = WriteBatch()
    for i in range(2000):
        key = ("m", f"i{i}")
        batch.index_puts.append(
            (key, frozenset({("owner", STRING, 0.0, f"o{i % 50}"), ("total", NUMBER, i % 100, "")}))
        )
    store.commit(batch)
    store.close()
    sql, args = index_query_sql(query, "?")
    with sqlite3.connect(path) as db:
        db.execute("ANALYZE")
        plan = " | ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, args))
    assert plan.startswith("SEARCH instance_index USING PRIMARY KEY (machine=? AND idx=?"), plan
    assert "TEMP B-TREE" not in plan and "SCAN" not in plan, plan
    if query.op == "eq" and query.kind == STRING:
        assert "str=?" in plan, plan
