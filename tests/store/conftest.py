"""Every store test runs against SQLite (its commits made in the server's process, and
again by its writer process) and PostgreSQL (``target``/``store`` fixtures)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backstate.store import Store

from . import postgres
from .targets import STORE_KINDS, Target, new_target


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    with postgres.throwaway_database() as url:
        yield url


@pytest.fixture(params=STORE_KINDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    return new_target(request, tmp_path)


@pytest.fixture
def store(target: Target) -> Iterator[Store]:
    opened = target.open()
    yield opened
    opened.close()
