"""The reads both SQL stores make: the same statements (with ``?`` placeholders) on
each store's ``_read``, and the rows they become."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ._backfills import backfill_row, select_sql
from ._indexes import index_query_sql
from ._log_queries import logs_sql
from ._records import (
    DeadLetterRow,
    EffectRow,
    HistoryRow,
    IdempotencyRow,
    InboxRow,
    IndexBackfillRow,
    IndexHit,
    IndexQuery,
    InstanceKey,
    InstanceRow,
    LogRow,
    TimerRow,
)


class SqlReads:
    """Mixed into a store that defines ``_read(sql, args)`` and ``EFFECT_ORDER`` (the
    column that keeps effects in insertion order)."""

    EFFECT_ORDER = "rowid"
    KEYS_PER_READ = 100  # (instance, key) pairs per statement (SQLite: 300 parameters)

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        raise NotImplementedError

    def load_instance(self, key: InstanceKey) -> InstanceRow | None:
        rows = self._read(
            "SELECT machine, name, version, seq, snapshot, status, parent, children, created_at, updated_at, desired_version"
            " FROM instances WHERE machine = ? AND name = ?",
            key,
        )
        return _instance(rows[0]) if rows else None

    def list_instances(self, machine: str, after: str | None, limit: int) -> list[InstanceRow]:
        rows = self._read(
            "SELECT machine, name, version, seq, snapshot, status, parent, children, created_at, updated_at, desired_version"
            " FROM instances WHERE machine = ? AND name > ? ORDER BY name LIMIT ?",
            (machine, after or "", limit),
        )
        return [_instance(r) for r in rows]

    def index_backfills(self, machine: str | None = None) -> list[IndexBackfillRow]:
        sql, args = select_sql(machine)
        return [backfill_row(r) for r in self._read(sql, args)]

    def query_index(self, query: IndexQuery) -> list[IndexHit]:
        sql, args = index_query_sql(query, "?")
        return [IndexHit(*r) for r in self._read(sql, args)]

    def history(self, key: InstanceKey, after_seq: int, limit: int) -> list[HistoryRow]:
        rows = self._read(
            "SELECT seq, event, snapshot, ts FROM history WHERE machine = ? AND instance = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (*key, after_seq, limit),
        )
        return [HistoryRow(r[0], json.loads(r[1]), json.loads(r[2]), r[3]) for r in rows]

    def idempotency_key(self, key: InstanceKey, idempotency_key: str) -> IdempotencyRow | None:
        return self.idempotency_keys([(key, idempotency_key)]).get((key, idempotency_key))

    def idempotency_keys(
        self, wanted: Sequence[tuple[InstanceKey, str]]
    ) -> dict[tuple[InstanceKey, str], IdempotencyRow]:
        # The runtime asks for a round's keys together. A statement per chunk: the pairs
        # as a table joined on the primary key (``_wanted_sql``: each store's own form).
        found: dict[tuple[InstanceKey, str], IdempotencyRow] = {}
        unique = list(dict.fromkeys(wanted))
        for start in range(0, len(unique), self.KEYS_PER_READ):
            chunk = unique[start : start + self.KEYS_PER_READ]
            table, args = self._wanted_sql(chunk)
            for r in self._read(
                "SELECT k.machine, k.instance, k.key, k.fingerprint, k.version, k.seq,"
                f" k.created_at FROM {table} JOIN idempotency_keys k"
                " ON k.machine = w.m AND k.instance = w.i AND k.key = w.k",
                args,
            ):
                row = IdempotencyRow(*r)
                found[((row.machine, row.instance), row.key)] = row
        return found

    def _wanted_sql(self, chunk: list[tuple[InstanceKey, str]]) -> tuple[str, tuple[Any, ...]]:
        """``chunk`` as a table ``w(m, i, k)`` (SQLite: a VALUES list)."""
        values = ", ".join(["(?, ?, ?)"] * len(chunk))
        args = tuple(part for (machine, name), key in chunk for part in (machine, name, key))
        return f"(WITH w(m, i, k) AS (VALUES {values}) SELECT * FROM w) w", args

    def pending_inbox(self, after_id: int = 0) -> list[InboxRow]:
        rows = self._read(
            "SELECT id, machine, instance, event, sender, priority, attempts, not_before FROM inbox"
            " WHERE id > ? ORDER BY priority, id",
            (after_id,),
        )
        return [InboxRow(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6], r[7]) for r in rows]

    def pending_timers(self) -> list[TimerRow]:
        rows = self._read(
            "SELECT machine, instance, key, event, due, target, attempts FROM timers"
            " ORDER BY due, machine, instance, key"
        )
        return [TimerRow(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6]) for r in rows]

    def unfinished_effects(self) -> list[EffectRow]:
        rows = self._read(
            "SELECT id, machine, instance, kind, name, child, retry FROM effects"
            f" ORDER BY {self.EFFECT_ORDER}"
        )
        return [
            EffectRow(
                r[0], r[1], r[2], r[3], r[4], r[5], None if r[6] is None else json.loads(r[6])
            )
            for r in rows
        ]

    def dead_letters(self, limit: int) -> list[DeadLetterRow]:
        rows = self._read(
            "SELECT id, machine, instance, event, sender, reason, attempts, ts FROM dead_letters ORDER BY id LIMIT ?",
            (limit,),
        )
        return [
            DeadLetterRow(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6], r[7]) for r in rows
        ]

    def logs(
        self,
        since: int,
        until: int,
        machine: str | None,
        instance: str | None,
        limit: int,
        *,
        version: str | None = None,
        namespace: str | None = None,
    ) -> list[LogRow]:
        query, args = logs_sql(since, until, machine, instance, limit, version, namespace)
        return [LogRow(*r) for r in self._read(query, args)]


def _key(text: str | None) -> InstanceKey | None:
    if text is None:
        return None
    machine, _, name = text.partition("/")
    return (machine, name)


def _instance(r: Any) -> InstanceRow:
    children = {k: _key(v) for k, v in json.loads(r[7]).items()}
    return InstanceRow(
        r[0],
        r[1],
        r[2],
        r[3],
        json.loads(r[4]),
        r[5],
        _key(r[6]),
        r[8],
        r[9],
        {k: v for k, v in children.items() if v is not None},
        r[10],
    )
