"""Indexes added to a machine that has instances, and the backfill of those instances:
the SQL both stores run (``?`` placeholders), inside a transaction each store opens.

``index_backfills (machine, idx)`` holds each added index: its selector, its state, the
cursor (``after_name``: every instance up to it is indexed), progress counters, and a
lease (``owner``, ``lease_until`` in ms of the store's clock) so that one process at a
time walks a given index. A step indexes the next instances in key order and moves the
cursor in the same transaction, so a crash loses at most a step that never committed,
and a step that committed is never done again.

Racing transitions: a step reads each instance's snapshot in its transaction while
holding the instance row (SQLite: the write lock; PostgreSQL: ``FOR UPDATE SKIP
LOCKED``, stopping before the first instance a commit holds, so a step never waits on,
or deadlocks with, a transition). A transition committed before the step is what the
step indexes; one committed after it rewrites the instance's entries itself (the
runtime knows the index by then: see runtime/_backfill).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from ._records import BackfillCompute, IndexBackfillRow

BACKFILLING, READY, FAILED = "backfilling", "ready", "failed"

_COLUMNS = (
    "machine, idx, selector, state, after_name, done, total, skipped, skip_note, error,"
    " created_at, updated_at"
)


class _Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


Execute = Callable[[str, Sequence[Any]], _Cursor]


def backfill_row(r: Sequence[Any]) -> IndexBackfillRow:
    return IndexBackfillRow(
        r[0], r[1], r[2], r[3], r[4], int(r[5]), int(r[6]), int(r[7]), r[8], r[9], r[10], r[11]
    )


def select_sql(machine: str | None) -> tuple[str, tuple[Any, ...]]:
    where = " WHERE machine = ?" if machine is not None else ""
    return (
        f"SELECT {_COLUMNS} FROM index_backfills{where} ORDER BY machine, created_at, idx",
        (machine,) if machine is not None else (),
    )


def add(ex: Execute, now: int, machine: str, name: str, selector: str) -> IndexBackfillRow | None:
    """Record the index as backfilling from the first instance; None if the machine
    already has an added index of that name, unless that one failed and has the same
    selector: then it is backfilling again, from the instance that failed (those before
    it are indexed), with its error cleared."""
    total = int(ex("SELECT count(*) FROM instances WHERE machine = ?", (machine,)).fetchone()[0])
    added = ex(
        f"INSERT INTO index_backfills ({_COLUMNS}, owner, lease_until)"
        " VALUES (?, ?, ?, ?, '', 0, ?, 0, NULL, NULL, ?, ?, NULL, 0)"
        " ON CONFLICT DO NOTHING",
        (machine, name, selector, BACKFILLING, total, now, now),
    )
    if added.rowcount != 1:
        retried = ex(
            "UPDATE index_backfills SET state = ?, error = NULL, owner = NULL, lease_until = 0,"
            " total = ?, updated_at = ? WHERE machine = ? AND idx = ? AND state = ?"
            " AND selector = ?",
            (BACKFILLING, total, now, machine, name, FAILED, selector),
        )
        if retried.rowcount != 1:
            return None
        row = ex(
            f"SELECT {_COLUMNS} FROM index_backfills WHERE machine = ? AND idx = ?",
            (machine, name),
        ).fetchone()
        return backfill_row(row)
    return IndexBackfillRow(
        machine, name, selector, BACKFILLING, "", 0, total, 0, None, None, now, now
    )


def claim(
    ex: Execute, now: int, machine: str, name: str, owner: str, ttl_ms: int, grace_ms: int
) -> bool:
    """Take (or renew) the lease of a backfill that is at least ``grace_ms`` old and
    whose lease is free, expired or already ``owner``'s."""
    claimed = ex(
        "UPDATE index_backfills SET owner = ?, lease_until = ?"
        " WHERE machine = ? AND idx = ? AND state = ? AND created_at <= ?"
        " AND (owner IS NULL OR owner = ? OR lease_until < ?)",
        (owner, now + ttl_ms, machine, name, BACKFILLING, now - grace_ms, owner, now),
    )
    return claimed.rowcount == 1


def step(
    ex: Execute,
    now: int,
    machine: str,
    name: str,
    owner: str,
    limit: int,
    compute: BackfillCompute,
    ttl_ms: int,
    locking: bool,
) -> IndexBackfillRow | None:
    """Index up to ``limit`` more instances and move the cursor past them; None unless
    ``owner`` holds the lease of a backfill still running. ``locking``: lock the
    instance rows (PostgreSQL; SQLite's write lock already excludes every writer)."""
    lock = " FOR UPDATE" if locking else ""
    found = ex(
        "SELECT after_name, owner, state, lease_until FROM index_backfills"
        f" WHERE machine = ? AND idx = ?{lock}",
        (machine, name),
    ).fetchone()
    if found is None or found[1] != owner or found[2] != BACKFILLING or found[3] < now:
        return None
    after = found[0]
    listed = ex(
        "SELECT name, version, snapshot FROM instances WHERE machine = ? AND name > ?"
        " ORDER BY name LIMIT ?",
        (machine, after, limit),
    ).fetchall()
    rows = [(r[0], r[1], r[2]) for r in listed]
    if locking and rows:
        # The locked rows are the latest committed ones (the listing may predate a
        # commit); an instance a commit holds ends the step before it.
        locked = ex(
            "SELECT name, version, snapshot FROM instances WHERE machine = ? AND name > ?"
            " AND name <= ? ORDER BY name FOR UPDATE SKIP LOCKED",
            (machine, after, rows[-1][0]),
        ).fetchall()
        prefix = 0
        while prefix < min(len(rows), len(locked)) and rows[prefix][0] == locked[prefix][0]:
            prefix += 1
        rows = [(r[0], r[1], r[2]) for r in locked[:prefix]]
    finished = len(listed) < limit and len(rows) == len(listed)
    entries, skipped = compute(rows)
    names = [r[0] for r in rows]
    if names:
        marks = ", ".join("?" * len(names))
        ex(
            f"DELETE FROM instance_index WHERE machine = ? AND idx = ? AND instance IN ({marks})",
            (machine, name, *names),
        )
    values = [
        (machine, index, kind, float(number), text, instance)
        for instance, found_entries in entries
        for index, kind, number, text in found_entries
        if index == name
    ]
    for start in range(0, len(values), 100):
        chunk = values[start : start + 100]
        marks = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(chunk))
        ex(
            f"INSERT INTO instance_index VALUES {marks} ON CONFLICT DO NOTHING",
            [v for value in chunk for v in value],
        )
    note = skipped[0] if skipped else None
    ex(
        "UPDATE index_backfills SET after_name = ?, done = done + ?, skipped = skipped + ?,"
        " skip_note = COALESCE(skip_note, ?), lease_until = ?, updated_at = ?,"
        " state = ?, total = CASE WHEN ? THEN done + ? ELSE total END"
        " WHERE machine = ? AND idx = ?",
        (
            names[-1] if names else after,
            len(names),
            len(skipped),
            note,
            now + ttl_ms,
            now,
            READY if finished else BACKFILLING,
            finished,
            len(names),
            machine,
            name,
        ),
    )
    return backfill_row(
        ex(
            f"SELECT {_COLUMNS} FROM index_backfills WHERE machine = ? AND idx = ?",
            (machine, name),
        ).fetchone()
    )


def fail(ex: Execute, now: int, machine: str, name: str, owner: str, error: str) -> None:
    ex(
        "UPDATE index_backfills SET state = ?, error = ?, updated_at = ?, owner = NULL"
        " WHERE machine = ? AND idx = ? AND owner = ? AND state = ?",
        (FAILED, error, now, machine, name, owner, BACKFILLING),
    )


def release(ex: Execute, owner: str) -> None:
    """Give up every lease of ``owner`` (a clean shutdown), for the next to take at once."""
    ex("UPDATE index_backfills SET owner = NULL WHERE owner = ?", (owner,))


def drop(ex: Execute, machine: str) -> None:
    """Forget a machine's added indexes (the machine is deleted)."""
    ex("DELETE FROM index_backfills WHERE machine = ?", (machine,))


T = TypeVar("T")


class BackfillWrites:
    """The store's methods for added indexes, mixed into a store that defines
    ``_backfill(operation)`` (runs ``operation(execute, now_ms)`` in one transaction),
    ``BACKFILL_LOCKING`` (whether a step locks instance rows: see ``step``) and
    ``_clean_text`` (what the store can hold of an error's text)."""

    BACKFILL_LOCKING = False

    def _backfill(self, operation: Callable[[Execute, int], T]) -> T:
        raise NotImplementedError

    def _clean_text(self, text: str) -> str:
        return text

    def add_index(self, machine: str, name: str, selector: str) -> IndexBackfillRow | None:
        return self._backfill(lambda ex, now: add(ex, now, machine, name, selector))

    def claim_backfill(
        self, machine: str, name: str, owner: str, ttl_ms: int, grace_ms: int
    ) -> bool:
        return self._backfill(
            lambda ex, now: claim(ex, now, machine, name, owner, ttl_ms, grace_ms)
        )

    def backfill_step(
        self,
        machine: str,
        name: str,
        owner: str,
        limit: int,
        compute: BackfillCompute,
        ttl_ms: int,
    ) -> IndexBackfillRow | None:
        locking = self.BACKFILL_LOCKING
        return self._backfill(
            lambda ex, now: step(
                ex, now, machine, name, owner, limit, compute, ttl_ms, locking=locking
            )
        )

    def fail_backfill(self, machine: str, name: str, owner: str, error: str) -> None:
        text = self._clean_text(error)
        self._backfill(lambda ex, now: fail(ex, now, machine, name, owner, text))

    def release_backfills(self, owner: str) -> None:
        self._backfill(lambda ex, now: release(ex, owner))
