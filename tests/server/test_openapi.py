"""schemathesis against /openapi.json on a live server: no 5xx for any input, and every
response matches the document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from starlette.routing import Route

from backstate.server import Backend, create_app
from backstate.server._openapi import document

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


def test_api_never_fails_and_matches_its_document(live: Server) -> None:
    # Driven without schemathesis's pytest plugin (it does not support pytest 9 yet).
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    headers = live.headers({"sid": "s1"})
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case: Any) -> None:
            # Credentials go in as a plain header, so the "ignored auth" replay would
            # still carry them; test_authorization.py covers refused credentials.
            # Schema-valid input can still be refused with a 400 for what a schema cannot
            # say (a machine file that does not load, an event the machine rejects).
            excluded = [
                schemathesis.checks.ignored_auth,
                schemathesis.checks.positive_data_acceptance,
            ]
            case.call_and_validate(headers=headers, excluded_checks=excluded)

        check()


def test_the_document_lists_the_routes(live: Server) -> None:
    doc = httpx.get(f"{live.url}/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/machines/{machine}/i/{instance}/events" in doc["paths"]
    assert Path(__file__).exists()


# Routes that are not API operations: the upload target of a signed upload (its URL comes
# in a create's answer), the document itself, the WebSocket, CORS preflights of the
# HTTP-API mapper, and the dashboard's files.
NOT_OPERATIONS = {
    ("POST", "/uploads/{token}"),
    ("GET", "/openapi.json"),
    ("OPTIONS", "/http-api/{org}/machines/{machine}/{slug}"),
    ("GET", "/"),
    ("GET", "/dashboard"),
    ("GET", "/dashboard/"),
    ("GET", "/dashboard/{path:path}"),
}


def test_every_route_is_in_the_document(tmp_path: Path) -> None:
    app = create_app(Backend(str(tmp_path / "routes.db")))
    routes = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or set()) - {"HEAD"}
    }
    documented = {
        (method.upper(), path)
        for path, operations in document()["paths"].items()
        for method in operations
        if method != "parameters"
    }
    assert routes - NOT_OPERATIONS - documented == set()
    assert documented - routes == set()  # and nothing documented that is not served
