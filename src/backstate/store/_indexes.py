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
    """SQL and arguments for ``query``; ``mark`` is the driver's placeholder.

    Every bound is written on a prefix of the key so the database seeks instead of
    filtering: a string entry's ``num`` is always 0 and a number's ``str`` always "", an
    ``eq`` page continues at ``instance > cursor``, a range page at the cursor's
    ``(num|str, ..., instance)`` (which makes the near-side bound of the operator
    redundant: it is dropped, the far side kept).
    """
    where = [f"machine = {mark}", f"idx = {mark}"]
    args: list[Any] = [query.machine, query.index]
    kind, op, after = query.kind, query.op, query.after
    if kind is not None:
        where.append(f"kind = {mark}")
        args.append(kind)
        if kind != NUMBER:
            where.append("num = 0")
    column = "num" if kind == NUMBER else "str"
    near = ("gt", "gte") if not query.descending else ("lt", "lte")
    if op is not None and not (after is not None and op in near):
        where.append(f"{column} {OPS[op]} {mark}")
        args.append(query.value)
    if after is not None:
        compare = "<" if query.descending else ">"
        columns: tuple[str, ...]
        values: tuple[Any, ...]
        if kind is None:
            columns, values = ("kind", "num", "str", "instance"), after
        elif op == "eq":
            columns, values = ("instance",), after[3:]
        elif kind == NUMBER:
            columns, values = ("num", "str", "instance"), after[1:]
        else:
            columns, values = ("str", "instance"), after[2:]
        if len(columns) == 1:
            where.append(f"instance {compare} {mark}")
        else:
            marks = ", ".join(mark for _ in columns)
            where.append(f"({', '.join(columns)}) {compare} ({marks})")
        args.extend(values)
    order = " DESC" if query.descending else ""
    sql = (
        "SELECT kind, num, str, instance FROM instance_index WHERE "
        + " AND ".join(where)
        + f" ORDER BY kind{order}, num{order}, str{order}, instance{order} LIMIT {mark}"
    )
    args.append(query.limit)
    return sql, tuple(args)
