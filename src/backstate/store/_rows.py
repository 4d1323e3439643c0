"""The rows of a write batch as the SQL stores write them: one tuple per row, in each
table's column order, JSON values as text. SQLite's plan (``_sqlite``) and PostgreSQL's
commit (``_postgres``) both build their statements' parameters from these, so a column
added to a table is added here once; each store keeps only its dialect (placeholders,
upserts, arrays) and the order of its statements.

``text`` is applied to the free text that user code writes (a dead letter's reason, a
log line): PostgreSQL's text cannot hold NUL, SQLite's can.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ._records import (
    DeadLetterRow,
    EffectRow,
    HistoryRow,
    IdempotencyRow,
    InboxRow,
    InstanceKey,
    InstanceRow,
    LogRow,
    RawJson,
    TimerRow,
)

Row = tuple[Any, ...]
Text = Callable[[str], str]

# The tables whose rows are written by position (``VALUES`` of every column, or
# PostgreSQL's ``SELECT * FROM unnest(...)``), with their columns in order: both stores'
# schemas hold them so, and the builders below make their tuples so
# (tests/store/test_rows.py checks all three).
COLUMNS = {
    "instances": (
        "machine",
        "name",
        "version",
        "seq",
        "snapshot",
        "status",
        "parent",
        "children",
        "created_at",
        "updated_at",
        "desired_version",
    ),
    "history": ("machine", "instance", "seq", "event", "snapshot", "ts"),
    "timers": ("machine", "instance", "key", "event", "due", "target", "attempts"),
    "effects": ("id", "machine", "instance", "kind", "name", "child", "retry"),
    "idempotency_keys": (
        "machine",
        "instance",
        "key",
        "fingerprint",
        "version",
        "seq",
        "created_at",
    ),
}

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def json_text(value: Any) -> str:
    """JSON text of exactly the type ``str`` (SQLite's writer takes no subclass in its
    frames): ``RawJson`` as it is, anything else encoded."""
    return str(value) if type(value) is RawJson else _encode(value)


def ref(key: InstanceKey | None) -> str | None:
    """An instance key as stored in a reference column: ``machine/name``."""
    return None if key is None else f"{key[0]}/{key[1]}"


def _same(value: str) -> str:
    return value


def instance(row: InstanceRow) -> Row:
    """An ``instances`` row (COLUMNS)."""
    return (
        row.machine,
        row.name,
        row.version,
        row.seq,
        json_text(row.snapshot),
        row.status,
        ref(row.parent),
        children(row),
        row.created_at,
        row.updated_at,
        row.desired_version,
    )


def instance_update(row: InstanceRow) -> Row:
    """What an update sets: version, seq, snapshot, status, children, updated_at,
    desired_version (the key and the expected sequence number are the store's to add)."""
    return (
        row.version,
        row.seq,
        json_text(row.snapshot),
        row.status,
        children(row),
        row.updated_at,
        row.desired_version,
    )


def children(row: InstanceRow) -> str:
    return json_text({k: ref(v) for k, v in row.children.items()}) if row.children else "{}"


def history(key: InstanceKey, row: HistoryRow) -> Row:
    """A ``history`` row (COLUMNS)."""
    return (*key, row.seq, json_text(row.event), json_text(row.snapshot), row.ts)


def inbox(row: InboxRow) -> Row:
    """machine, instance, event, sender, priority, attempts, not_before (the id is the
    store's: delivery order)."""
    return (
        row.machine,
        row.instance,
        json_text(row.event),
        row.sender,
        row.priority,
        row.attempts,
        row.not_before,
    )


def timer(row: TimerRow) -> Row:
    """A ``timers`` row (COLUMNS)."""
    return (row.machine, row.instance, row.key, json_text(row.event), row.due, row.to, row.attempts)


def effect(row: EffectRow) -> Row:
    """An ``effects`` row (COLUMNS)."""
    return (row.id, row.machine, row.instance, row.kind, row.name, row.child, retry(row.retry))


def retry(value: Any) -> str | None:
    return None if value is None else json_text(value)


def dead_letter(row: DeadLetterRow, text: Text = _same) -> Row:
    """machine, instance, event, sender, reason, attempts, ts (the id is the store's)."""
    return (
        row.machine,
        row.instance,
        json_text(row.event),
        row.sender,
        text(row.reason),
        row.attempts,
        row.ts,
    )


def log(row: LogRow, text: Text = _same) -> Row:
    """ts, machine, version, instance, level, message (the id is the store's)."""
    return (row.ts, row.machine, row.version, row.instance, row.level, text(row.message))


def idempotency(row: IdempotencyRow) -> Row:
    """An ``idempotency_keys`` row (COLUMNS)."""
    return (
        row.machine,
        row.instance,
        row.key,
        row.fingerprint,
        row.version,
        row.seq,
        row.created_at,
    )


def idempotency_answer(answer: tuple[InstanceKey, str, str, int]) -> Row:
    """version, seq, machine, instance, key: an answer recorded for a kept key."""
    key, idem, version, seq = answer
    return (version, seq, *key, idem)


# Where an instance's rows are, by table and the column holding its name: what deleting
# an instance deletes.
INSTANCE_TABLES = (
    ("instances", "name"),
    ("history", "instance"),
    ("inbox", "instance"),
    ("timers", "instance"),
    ("effects", "instance"),
    ("instance_index", "instance"),
    ("idempotency_keys", "instance"),
)
