"""Where a test's store lives, SQLite or PostgreSQL, for the parametrized fixtures of
tests/store and tests/runtime."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backstate.store import CommitResult, SQLiteStore, Store, WriteBatch, open_store

from . import postgres

KINDS = ["sqlite", "postgresql"]
# The store tests run a third time with every commit made by SQLite's writer process,
# the way the runtime makes its own (``commit_async``).
STORE_KINDS = [*KINDS, "sqlite-writer"]


class ThroughWriter(SQLiteStore):
    """A SQLite store whose ``commit`` is ``commit_async``, on a loop of its own."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def commit(self, batch: WriteBatch) -> CommitResult:
        async def commit() -> CommitResult:
            return await self.commit_async(batch)

        return asyncio.run_coroutine_threadsafe(commit(), self._loop).result()

    def close(self) -> None:
        if self._loop.is_closed():  # closed before
            SQLiteStore.close(self)
            return

        async def close() -> None:  # the writer's streams are the loop's
            SQLiteStore.close(self)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


@dataclass
class Target:
    """``open()`` a store on it (as often as a test restarts), run raw SQL with ``rows``."""

    kind: str  # "sqlite" | "postgresql" | "sqlite-writer" (STORE_KINDS)
    url: str

    def open(self) -> Store:
        if self.kind == "sqlite-writer":
            return ThroughWriter(self.url)
        return open_store(self.url)

    def rows(self, query: str, *args: Any) -> list[Any]:
        """One statement, ``?`` placeholders, on a connection of its own."""
        if self.kind == "postgresql":
            return postgres.rows(self.url, query, *args)
        with sqlite3.connect(self.url) as conn:
            return conn.execute(query, args).fetchall()


def new_target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """For a fixture parametrized over ``KINDS``; PostgreSQL needs a session fixture
    ``postgres_database`` (a throwaway database) and gets a fresh schema in it."""
    if request.param in ("sqlite", "sqlite-writer"):
        return Target(request.param, str(tmp_path / "a.db"))
    return Target("postgresql", postgres.fresh_schema(request.getfixturevalue("postgres_database")))
