"""The runtime tests run on SQLite and PostgreSQL: ``db`` is where the store lives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store import postgres
from tests.store.targets import KINDS, Target, new_target


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    with postgres.throwaway_database() as url:
        yield url


@pytest.fixture(params=KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    return new_target(request, tmp_path)
