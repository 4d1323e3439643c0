"""Many `backstate serve` processes on one throwaway PostgreSQL database."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from backstate.auth import sign_token
from tests.store import postgres

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """One `backstate serve --store URL` process."""

    def __init__(self, store: str, tmp: Path, deploy: bool) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.creds_path = tmp / "credentials.json"
        args = [str(Path(sys.executable).parent / "backstate"), "serve", "--store", store]
        args += ["--port", str(self.port), "--credentials", str(self.creds_path)]
        if deploy:
            args += ["--deploy", str(HERE / "cluster_machine.py")]
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.url + "/machines", timeout=1)
                return
            except httpx.TransportError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"node did not start: {''.join(self.output)}") from None
                time.sleep(0.1)

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


class Cluster:
    def __init__(self, store: str, tmp: Path, count: int) -> None:
        self.store = store
        self.nodes: list[Node] = []
        try:
            # The first node creates the org and deploys; the others find both.
            for i in range(count):
                self.nodes.append(Node(store, tmp, deploy=i == 0))
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
