"""schemathesis against /openapi.json on a live server: no 5xx for any input, and every
response matches the document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from .test_e2e import Server


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("openapi"))
    try:
        me = srv.headers({"sid": "s1"})
        httpx.post(f"{srv.url}/machines/toggler", json={"slug": "s1"}, headers=me)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def api_schema(live: Server) -> Any:
    return schemathesis.openapi.from_url(f"{live.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_fails_and_matches_its_document(case: Any, live: Server) -> None:
    case.call_and_validate(headers=live.headers({"sid": "s1"}))


def test_the_document_lists_the_routes(live: Server) -> None:
    doc = httpx.get(f"{live.url}/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/machines/{machine}/i/{instance}/events" in doc["paths"]
    assert Path(__file__).exists()
