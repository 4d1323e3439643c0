"""A fresh `backstate serve` process per test (modules may override `server`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store import postgres

from .test_e2e import Server


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    with postgres.throwaway_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """Where a test's server keeps its instances: None (a SQLite file in its folder) or
    a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return None
    return postgres.fresh_schema(request.getfixturevalue("postgres_database"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()
