"""Where a test's store lives, SQLite or PostgreSQL, for the parametrized fixtures of
tests/store and tests/runtime."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backstate.store import Store, open_store

from . import postgres

KINDS = ["sqlite", "postgresql"]


@dataclass
class Target:
    """``open()`` a store on it (as often as a test restarts), run raw SQL with ``rows``."""

    kind: str  # "sqlite" | "postgresql"
    url: str

    def open(self) -> Store:
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
    if request.param == "sqlite":
        return Target("sqlite", str(tmp_path / "a.db"))
    return Target("postgresql", postgres.fresh_schema(request.getfixturevalue("postgres_database")))
