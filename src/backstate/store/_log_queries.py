"""The SQL of a page of logs, shared by the SQLite and PostgreSQL stores."""

from __future__ import annotations

from typing import Any


def logs_sql(
    since: int,
    until: int,
    machine: str | None,
    instance: str | None,
    limit: int,
    version: str | None,
    namespace: str | None,
) -> tuple[str, tuple[Any, ...]]:
    """Logs with ``since <= ts < until`` in order, filtered in the query (so a page is
    never cut short by rows a filter would drop): by machine, instance, version, and
    ``namespace`` (machines named ``<namespace>.<machine>``: one org's, on a server)."""
    sql = "SELECT ts, machine, version, instance, level, message FROM logs WHERE ts >= ? AND ts < ?"
    args: list[Any] = [since, until]
    for column, value in (("machine", machine), ("instance", instance), ("version", version)):
        if value is not None:
            sql += f" AND {column} = ?"
            args.append(value)
    if namespace is not None:
        prefix = namespace + "."
        sql += " AND substr(machine, 1, ?) = ?"
        args.extend((len(prefix), prefix))
    return sql + " ORDER BY ts, id LIMIT ?", (*args, limit)
