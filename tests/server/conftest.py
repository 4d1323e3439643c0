"""A fresh `backstate serve` process per test (modules may override `server`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_e2e import Server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()
