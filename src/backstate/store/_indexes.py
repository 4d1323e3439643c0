"""The SQL of a secondary-index page, shared by the SQLite and PostgreSQL stores.

Entries live in ``instance_index (machine, idx, kind, num, str, instance)`` whose
primary key is that column order, so every query is one range scan of it: the
(machine, index) prefix, then the kind and value bound, then the cursor.
"""

from __future__ import annotations

from typing import Any

from ._records import IndexQuery

OPS = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
NUMBER = 0


def index_query_sql(query: IndexQuery, mark: str) -> tuple[str, tuple[Any, ...]]:
    """SQL and arguments for ``query``; ``mark`` is the driver's placeholder."""
    where = [f"machine = {mark}", f"idx = {mark}"]
    args: list[Any] = [query.machine, query.index]
    if query.kind is not None:
        where.append(f"kind = {mark}")
        args.append(query.kind)
    if query.op is not None:
        column = "num" if query.kind == NUMBER else "str"
        where.append(f"{column} {OPS[query.op]} {mark}")
        args.append(query.value)
    if query.after is not None:
        where.append(
            f"(kind, num, str, instance) {'<' if query.descending else '>'} "
            f"({mark}, {mark}, {mark}, {mark})"
        )
        args.extend(query.after)
    order = " DESC" if query.descending else ""
    sql = (
        "SELECT kind, num, str, instance FROM instance_index WHERE "
        + " AND ".join(where)
        + f" ORDER BY kind{order}, num{order}, str{order}, instance{order} LIMIT {mark}"
    )
    args.append(query.limit)
    return sql, tuple(args)
