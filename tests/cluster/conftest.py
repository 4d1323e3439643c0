"""Many `backstate serve` processes on one throwaway PostgreSQL database."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from backstate.auth import sign_token
from tests.server.test_e2e import Server
from tests.store import postgres

HERE = Path(__file__).resolve().parent


class Cluster:
    def __init__(self, store: str, tmp: Path, count: int) -> None:
        self.store = store
        self.nodes: list[Server] = []
        try:
            # The first node creates the org and deploys; the others find both.
            for i in range(count):
                self.nodes.append(
                    Server(
                        tmp,
                        store=store,
                        deploy=HERE / "cluster_machine.py" if i == 0 else None,
                        start_timeout=30,
                    )
                )
            self.creds = json.loads((tmp / "credentials.json").read_text())
            self.wait_for_owners(count)
        except BaseException:
            self.stop()
            raise

    def headers(self) -> dict[str, str]:
        token = sign_token(
            self.creds["keyId"], self.creds["secret"], {"sub": "test"}, expires_in_s=3600
        )
        return {"authorization": f"Bearer {token}"}

    def token(self) -> str:
        return sign_token(
            self.creds["keyId"], self.creds["secret"], {"sub": "test"}, expires_in_s=3600
        )

    def rows(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        return postgres.rows(self.store, query, *args)

    def wait_for_owners(self, count: int, timeout: float = 20.0) -> None:
        """Until ``count`` nodes hold leases and every shard has a live owner."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            owned = self.rows(
                "SELECT count(DISTINCT node), count(*) FROM shard_leases WHERE expires_at > now()"
            )
            if owned == [(count, 64)]:
                return
            time.sleep(0.2)
        raise AssertionError(f"shards not spread over {count} nodes: {owned}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _postgres_available() -> bool:
    try:
        with psycopg.connect(postgres.ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@pytest.fixture
def database() -> Iterator[str]:
    if not _postgres_available() and not os.environ.get("BACKSTATE_REQUIRE_POSTGRES"):
        pytest.skip("no PostgreSQL server")
    with postgres.throwaway_database() as url:
        yield url
