"""A real `backstate serve` per module (tests/server's ``Server``), with the `say` test
machine deployed beside the toggler, and clients signing tokens with its admin key."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from backstate.client import Client
from tests.server.test_e2e import Server

SAY_SOURCE = (Path(__file__).with_name("say.py")).read_text()


def deploy_say(server: Server) -> None:
    with Client.from_credentials(server.creds_path) as admin:
        admin.machines.create("say")
        admin.machine_versions.create("say", SAY_SOURCE, client_info="say-1")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("client"))
    try:
        deploy_say(srv)
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with Client.from_credentials(server.creds_path, claims={"sub": "admin"}) as c:
        yield c


@pytest.fixture
def name() -> str:
    """A fresh instance or machine name: tests share their module's server."""
    return "t-" + uuid.uuid4().hex[:12]
