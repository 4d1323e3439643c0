"""The embedded store: one SQLite file in WAL mode.

Durability: ``synchronous=FULL`` by default, so a commit survives power loss; every
commit is one fsync, which is why the runtime commits many transitions per batch.
Writes run in ``BEGIN IMMEDIATE`` transactions so a second process fails fast on the
write lock (after ``busy_timeout``) instead of deadlocking on a lock upgrade.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from . import _backfills, _rows, _sqlite_plan
from ._protocol import SequenceConflict, StoreError
from ._reads import SqlReads
from ._records import (
    CommitResult,
    TimerRow,
    WriteBatch,
)
from ._sqlite_plan import Plan
from ._sqlite_writer import Writer

MIGRATIONS: list[str] = [
    """
    CREATE TABLE machine_versions (
        machine TEXT NOT NULL, version TEXT NOT NULL, created_at INTEGER NOT NULL,
        PRIMARY KEY (machine, version)
    );
    CREATE TABLE instances (
        machine TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
        seq INTEGER NOT NULL, snapshot TEXT NOT NULL, status TEXT NOT NULL,
        parent TEXT, children TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
        PRIMARY KEY (machine, name)
    ) WITHOUT ROWID;
    -- A rowid table: rows are appended in commit order, so one commit's history
    -- lands on a few pages (keyed by instance, each row would touch its own page).
    CREATE TABLE history (
        machine TEXT NOT NULL, instance TEXT NOT NULL, seq INTEGER NOT NULL,
        event TEXT NOT NULL, snapshot TEXT NOT NULL, ts INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX history_instance_seq ON history (machine, instance, seq);
    CREATE TABLE inbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        machine TEXT NOT NULL, instance TEXT NOT NULL, event TEXT NOT NULL,
        sender TEXT NOT NULL, priority INTEGER NOT NULL, attempts INTEGER NOT NULL,
        not_before INTEGER NOT NULL
    );
    CREATE INDEX inbox_instance ON inbox (machine, instance, priority, id);
    CREATE TABLE timers (
        machine TEXT NOT NULL, instance TEXT NOT NULL, key TEXT NOT NULL,
        event TEXT NOT NULL, due INTEGER NOT NULL, target TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        PRIMARY KEY (machine, instance, key)
    ) WITHOUT ROWID;
    CREATE INDEX timers_due ON timers (due);
    CREATE TABLE effects (
        id TEXT PRIMARY KEY, machine TEXT NOT NULL, instance TEXT NOT NULL,
        kind TEXT NOT NULL, name TEXT NOT NULL, child TEXT
    );
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        machine TEXT NOT NULL, instance TEXT NOT NULL, event TEXT NOT NULL,
        sender TEXT NOT NULL, reason TEXT NOT NULL, attempts INTEGER NOT NULL,
        ts INTEGER NOT NULL
    );
    CREATE TABLE logs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL,
        machine TEXT NOT NULL, version TEXT NOT NULL, instance TEXT NOT NULL,
        level TEXT NOT NULL, message TEXT NOT NULL
    );
    CREATE INDEX logs_ts ON logs (ts);
    """,
    # 2: upgrades (the desired version) and secondary indexes.
    """
    ALTER TABLE instances ADD COLUMN desired_version TEXT;
    CREATE TABLE instance_index (
        machine TEXT NOT NULL, idx TEXT NOT NULL, kind INTEGER NOT NULL,
        num REAL NOT NULL, str TEXT NOT NULL, instance TEXT NOT NULL,
        PRIMARY KEY (machine, idx, kind, num, str, instance)
    ) WITHOUT ROWID;
    CREATE INDEX instance_index_instance ON instance_index (machine, instance);
    """,
    # 3: idempotency keys (see runtime/_idempotency).
    """
    CREATE TABLE idempotency_keys (
        machine TEXT NOT NULL, instance TEXT NOT NULL, key TEXT NOT NULL,
        fingerprint TEXT NOT NULL, version TEXT NOT NULL, seq INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (machine, instance, key)
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
    """,
    # 4: retried services' attempts (see runtime/_retries).
    """
    ALTER TABLE effects ADD COLUMN retry TEXT;
    """,
    # 5: indexes added to a machine, and their backfills (see _backfills).
    """
    CREATE TABLE index_backfills (
        machine TEXT NOT NULL, idx TEXT NOT NULL, selector TEXT NOT NULL,
        state TEXT NOT NULL, after_name TEXT NOT NULL, done INTEGER NOT NULL,
        total INTEGER NOT NULL, skipped INTEGER NOT NULL, skip_note TEXT, error TEXT,
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
        owner TEXT, lease_until INTEGER NOT NULL,
        PRIMARY KEY (machine, idx)
    ) WITHOUT ROWID;
    """,
]

T = TypeVar("T")


class SQLiteStore(SqlReads, _backfills.BackfillWrites):
    def __init__(
        self, path: str | Path, *, synchronous: str = "FULL", busy_timeout_ms: int = 5000
    ) -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.path = str(path)
        # (resolved: the writer must open this file whatever the working directory)
        self._writer = Writer(Path(self.path).resolve(), synchronous.upper(), int(busy_timeout_ms))
        # One connection for the writes the writer process does not make (control,
        # backfills, expiry), from several threads: the lock serialises them (SQLite
        # connections are not safe to share otherwise).
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal" and self.path != ":memory:":
                raise StoreError(f"could not enable WAL on {self.path} (got {mode})")
            self._db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            self._migrate()
            # WAL lets this second connection read while the first one commits.
            self._reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._reader.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc

    # -- schema -------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._write() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            current = row[0] if row else 0
            if current > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path} has schema {current}; this backstate knows {len(MIGRATIONS)}"
                )
            for version in range(current, len(MIGRATIONS)):
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        db.execute(statement)
            if row is None:
                db.execute("INSERT INTO schema_version VALUES (?)", (len(MIGRATIONS),))
            else:
                db.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS),))

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT version FROM schema_version").fetchone()[0])

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._read_lock:
            try:
                return self._reader.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(str(exc)) from exc

    # -- reads ----------------------------------------------------------------------------

    # -- writes ---------------------------------------------------------------------------

    def record_version(self, machine: str, version: str, now: int) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO machine_versions VALUES (?, ?, ?)", (machine, version, now)
            )

    def commit(self, batch: WriteBatch) -> CommitResult:
        try:
            with self._write() as db:
                return CommitResult(_sqlite_plan.run(db, _plan(batch)))
        except _sqlite_plan.Conflict as exc:
            raise SequenceConflict(str(exc)) from None
        except sqlite3.Error as exc:
            raise StoreError(f"commit failed: {exc}") from exc

    def commit_async(self, batch: WriteBatch) -> asyncio.Future[CommitResult]:
        """As ``commit``, made by the writer process (_sqlite_writer) while the event
        loop goes on: sent at once, resolved when the writer answers."""
        try:
            return self._writer.submit(_plan(batch))
        except Exception as exc:  # no writer, or a bug of ours: the commit's error
            future: asyncio.Future[CommitResult] = asyncio.get_running_loop().create_future()
            future.set_exception(exc)
            return future

    def expire_idempotency_keys(self, before: int) -> int:
        try:
            with self._write() as db:
                return db.execute(
                    "DELETE FROM idempotency_keys WHERE created_at < ?", (before,)
                ).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"commit failed: {exc}") from exc

    # -- added indexes (see _backfills) ---------------------------------------------------

    def _backfill(self, operation: Callable[[_backfills.Execute, int], T]) -> T:
        try:
            with self._write() as db:

                def ex(text: str, args: Sequence[Any]) -> sqlite3.Cursor:
                    return db.execute(text, tuple(args))

                return operation(ex, time.time_ns() // 1_000_000)
        except sqlite3.Error as exc:
            raise StoreError(f"commit failed: {exc}") from exc

    def drop_indexes(self, machine: str) -> None:
        self._backfill(lambda ex, now: _backfills.drop(ex, machine))

    def close(self) -> None:
        self._writer.close()
        with self._lock, self._read_lock:
            self._db.close()
            self._reader.close()


def _plan(batch: WriteBatch) -> Plan:
    """The statements and rows of ``batch``, in its order (see WriteBatch)."""
    plan: Plan = []

    def many(sql: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            plan.append(("many", sql, rows))

    many(
        "INSERT INTO instances VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [_rows.instance(row) for row in batch.instance_creates],
    )
    if batch.instance_updates:
        # Each must find its row at the sequence number it expects (_sqlite_plan).
        plan.append(
            (
                "updates",
                "UPDATE instances SET version = ?, seq = ?, snapshot = ?, status = ?,"
                " children = ?, updated_at = ?, desired_version = ?"
                " WHERE machine = ? AND name = ? AND seq = ?",
                [
                    (*_rows.instance_update(row), *key, expected)
                    for key, expected, row in batch.instance_updates
                ],
            )
        )
    many(
        "UPDATE instances SET status = ? WHERE machine = ? AND name = ?",
        [(s, *k) for k, s in batch.status_updates],
    )
    many(
        "UPDATE instances SET desired_version = ? WHERE machine = ? AND name = ?",
        [(v, *k) for k, v in batch.desired_updates],
    )
    for key, entries in batch.index_puts:
        plan.append(("exec", "DELETE FROM instance_index WHERE machine = ? AND instance = ?", key))
        many(
            "INSERT INTO instance_index VALUES (?, ?, ?, ?, ?, ?)",
            [(key[0], *e, key[1]) for e in entries],
        )
    many(
        "INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)",
        [_rows.history(key, h) for key, h in batch.history],
    )
    many("DELETE FROM inbox WHERE id = ?", [(i,) for i in batch.inbox_deletes])
    many(
        "UPDATE inbox SET attempts = ?, not_before = ? WHERE id = ?",
        [(a, n, i) for i, a, n in batch.inbox_retries],
    )
    if batch.inbox_inserts:
        plan.append(
            (
                "ids",
                "INSERT INTO inbox (machine, instance, event, sender, priority, attempts,"
                " not_before) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [_rows.inbox(m) for m in batch.inbox_inserts],
            )
        )
    for op in batch.timer_ops:
        if isinstance(op, TimerRow):
            sql = "INSERT OR REPLACE INTO timers VALUES (?, ?, ?, ?, ?, ?, ?)"
            plan.append(("exec", sql, _rows.timer(op)))
        else:
            sql = "DELETE FROM timers WHERE machine = ? AND instance = ? AND key = ?"
            plan.append(("exec", sql, (*op[0], op[1])))
    many(
        "INSERT INTO effects VALUES (?, ?, ?, ?, ?, ?, ?)",
        [_rows.effect(e) for e in batch.effect_inserts],
    )
    many(
        "UPDATE effects SET retry = ? WHERE id = ?",
        [(_rows.json_text(r), i) for i, r in batch.effect_retries],
    )
    many("DELETE FROM effects WHERE id = ?", [(i,) for i in batch.effect_done])
    many(
        "INSERT INTO dead_letters (machine, instance, event, sender, reason, attempts, ts)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [_rows.dead_letter(d) for d in batch.dead_letters],
    )
    many("DELETE FROM dead_letters WHERE id = ?", [(i,) for i in batch.dead_letter_deletes])
    many(
        "INSERT INTO logs (ts, machine, version, instance, level, message)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [_rows.log(g) for g in batch.logs],
    )
    many(
        "INSERT OR REPLACE INTO idempotency_keys VALUES (?, ?, ?, ?, ?, ?, ?)",
        [_rows.idempotency(r) for r in batch.idempotency_puts],
    )
    many(
        "UPDATE idempotency_keys SET version = ?, seq = ? WHERE machine = ? AND instance = ?"
        " AND key = ?",
        [_rows.idempotency_answer(a) for a in batch.idempotency_answers],
    )
    for key in batch.instance_deletes:
        for table, col in _rows.INSTANCE_TABLES:
            plan.append(("exec", f"DELETE FROM {table} WHERE machine = ? AND {col} = ?", key))
    return plan
