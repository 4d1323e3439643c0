"""The small SQL layer the control plane runs on, so its queries are written once.

Statements use ``?`` placeholders and SQL that SQLite and PostgreSQL both accept
(``ON CONFLICT``, no ``INSERT OR ...``); a ``Database`` translates placeholders for its
driver. Schema DDL differs between the two and stays with its owner, chosen by
``Database.dialect``. Every driver error leaves as ``StoreError``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ._protocol import StoreError

Statement = tuple[str, Sequence[Any]]
T = TypeVar("T")


class Database(Protocol):
    dialect: str  # "sqlite" | "postgresql"

    def migrate(self, table: str, migrations: Sequence[str]) -> None:
        """Apply ``migrations[v:]`` where ``v`` is the version recorded in ``table``;
        refuse a schema newer than ``len(migrations)``."""

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def execute(self, *statements: Statement) -> list[int]:
        """Run the statements in one transaction; their row counts."""

    def exclusive(self, key: int) -> AbstractContextManager[None]:
        """Hold lock ``key`` against every process on this database while the block
        runs (the others wait for it)."""

    def close(self) -> None: ...


class SQLiteDatabase:
    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc

    def migrate(self, table: str, migrations: Sequence[str]) -> None:
        def apply(db: sqlite3.Connection) -> None:
            db.execute(f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER NOT NULL)")
            row = db.execute(f"SELECT version FROM {table}").fetchone()
            current = row[0] if row else 0
            if current > len(migrations):
                raise StoreError(
                    f"{self.path} has {table} {current}; this backstate knows {len(migrations)}"
                )
            for migration in migrations[current:]:
                for statement in migration.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"DELETE FROM {table}")
            db.execute(f"INSERT INTO {table} VALUES (?)", (len(migrations),))

        self._transaction(apply)

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(str(exc)) from exc

    def execute(self, *statements: Statement) -> list[int]:
        return self._transaction(
            lambda db: [db.execute(sql, args).rowcount for sql, args in statements]
        )

    def _transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = body(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                return result
            except sqlite3.Error as exc:
                raise StoreError(str(exc)) from exc

    def exclusive(self, key: int) -> AbstractContextManager[None]:
        # BEGIN IMMEDIATE already serializes writers; one process serves a SQLite file.
        return contextlib.nullcontext()

    def close(self) -> None:
        with self._lock:
            self._db.close()
