"""Every store test runs against SQLite and PostgreSQL (``target``/``store`` fixtures)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backstate.store import Store, open_store

from . import postgres


@dataclass
class Target:
    """Where a test's store lives: ``open()`` a store on it, run raw SQL with ``rows``."""

    kind: str  # "sqlite" | "postgresql"
    url: str

    def open(self) -> Store:
        return open_store(self.url)

    def rows(self, query: str, *args: Any) -> list[Any]:
        if self.kind == "postgresql":
            return postgres.rows(self.url, query, *args)
        with sqlite3.connect(self.url) as conn:
            return conn.execute(query, args).fetchall()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    with postgres.throwaway_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "sqlite":
        return Target("sqlite", str(tmp_path / "s.db"))
    return Target("postgresql", postgres.fresh_schema(request.getfixturevalue("postgres_database")))


@pytest.fixture
def store(target: Target) -> Iterator[Store]:
    opened = target.open()
    yield opened
    opened.close()
