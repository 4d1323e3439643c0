"""The authorization matrix: every route against every way a request can be refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from backstate.auth import Scope, new_key, new_org_id, sign_token
from backstate.store import ControlStore, KeyRow, OrgRow

from .test_e2e import Server

# (method, path, body, scope the route needs)
ROUTES: list[tuple[str, str, Any, Scope]] = [
    ("GET", "/machines", None, Scope.MACHINES_READ),
    ("POST", "/machines", {"slug": "m2"}, Scope.MACHINES_WRITE),
    ("GET", "/machines/toggler", None, Scope.MACHINES_READ),
    ("GET", "/machines/toggler/v", None, Scope.MACHINE_VERSIONS_READ),
    ("POST", "/machines/toggler/v", {}, Scope.MACHINE_VERSIONS_WRITE),
    ("POST", "/machines/toggler", {"slug": "new-one"}, Scope.INSTANCES_WRITE),
    ("GET", "/machines/toggler/i", None, Scope.INSTANCES_READ),
    ("GET", "/machines/toggler/i/s1", None, Scope.STATE_READ),
    ("POST", "/machines/toggler/i/s1/events", {"event": "toggle"}, Scope.INSTANCES_WRITE),
    ("GET", "/machines/toggler/i/s1/events", None, Scope.INSTANCES_ADMIN),
    ("GET", "/machines/toggler/i/s1/admin", None, Scope.INSTANCES_ADMIN),
    ("PUT", "/machines/toggler/i/s1/status", {"status": "running"}, Scope.INSTANCES_ADMIN),
    (
        "DELETE",
        "/machines/toggler/i/s1",
        {"dangerDataWillBeDeletedForever": True},
        Scope.INSTANCES_ADMIN,
    ),
    ("GET", "/logs?from=0", None, Scope.LOGS_READ),
    ("PUT", "/machines/toggler/i/s1/v", {"targetMachineVersionId": "ver_x"}, Scope.INSTANCES_ADMIN),
    (
        "POST",
        "/machines/toggler/i/s1/v/dry-run",
        {"targetMachineVersionId": "ver_x"},
        Scope.INSTANCES_ADMIN,
    ),
    ("POST", "/machines/toggler/migrations", {}, Scope.MACHINE_VERSIONS_WRITE),
    ("PUT", "/machines/toggler/migrations/upl_x", None, Scope.MACHINE_VERSIONS_WRITE),
    ("GET", "/machines/toggler/indexes/ix/query", None, Scope.INDEXES_READ),
    ("GET", "/machines/toggler/indexes", None, Scope.MACHINES_READ),
    ("GET", "/machines/toggler/indexes/ix", None, Scope.MACHINES_READ),
    ("POST", "/machines/toggler/indexes", {"name": "ix", "selector": "$.a"}, Scope.MACHINES_WRITE),
]


class Matrix:
    def __init__(self, server: Server, db: Path) -> None:
        self.server = server
        control = ControlStore(db)
        admin_org = control.orgs()[0].id
        other = OrgRow(new_org_id(), "other", 1)
        control.add_org(other)
        self.keys: dict[str, tuple[str, str]] = {}
        for label, org, scopes in (
            ("other-org", other.id, tuple(Scope)),
            ("no-scopes", admin_org, (Scope.ORG_READ,)),
        ):
            key = new_key(org, label, scopes, 1)
            control.add_key(
                KeyRow(key.id, org, label, tuple(s.value for s in scopes), key.secret, 1)
            )
            self.keys[label] = (key.id, key.secret)
        control.close()

    def call(self, method: str, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
        return httpx.request(method, self.server.url + path, json=body, headers=headers)


@pytest.fixture
def matrix(tmp_path: Path) -> Iterator[Matrix]:
    srv = Server(tmp_path)
    try:
        me = srv.headers({"sid": "s1"})
        assert (
            httpx.post(f"{srv.url}/machines/toggler", json={"slug": "s1"}, headers=me).status_code
            == 200
        )
        yield Matrix(srv, tmp_path / "b.db")
    finally:
        srv.stop()


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("method", "path", "body", "scope"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES]
)
def test_every_route_refuses_every_bad_credential(
    matrix: Matrix, method: str, path: str, body: Any, scope: Scope
) -> None:
    server = matrix.server
    key_id, secret = server.creds["keyId"], server.creds["secret"]
    now = int(time.time())
    cases: dict[str, tuple[dict[str, str], int, str | None]] = {
        "missing token": ({}, 401, None),
        "garbage token": (_bearer("not.a.jwt"), 401, None),
        "expired": (_bearer(server.token({"sid": "s1"}, ttl=-120)), 401, None),
        "alg none": (
            _bearer(
                jwt.encode(
                    {"act": {"sid": "s1"}, "exp": now + 60},
                    key="",
                    algorithm="none",
                    headers={"kid": key_id},
                )
            ),
            401,
            None,
        ),
        "unknown kid": (
            _bearer(sign_token("sbk_unknown", secret, {"sid": "s1"}, expires_in_s=60)),
            401,
            None,
        ),
        "wrong secret": (
            _bearer(sign_token(key_id, "sbsec_wrong", {"sid": "s1"}, expires_in_s=60)),
            401,
            None,
        ),
        "missing scope": (
            _bearer(sign_token(*matrix.keys["no-scopes"], {"sid": "s1"}, expires_in_s=60)),
            403,
            "missing-scope",
        ),
        "other org": (
            _bearer(sign_token(*matrix.keys["other-org"], {"sid": "s1"}, expires_in_s=60)),
            404,
            None,
        ),
        "org header mismatch": (
            {**server.headers({"sid": "s1"}), "x-statebacked-org-id": "org_someoneelse"},
            403,
            "missing-org",
        ),
    }
    for label, (headers, status, code) in cases.items():
        if label == "other org" and path in ("/machines", "/logs?from=0"):
            continue  # lists and creates in the other org are allowed: they see only that org
        response = matrix.call(method, path, body, headers)
        assert response.status_code == status, f"{label}: {response.status_code} {response.text}"
        if code is not None:
            assert response.json()["code"] == code, label
        assert "error" in response.json() and "code" in response.json(), label
    # Nothing above changed the instance.
    state = httpx.get(
        f"{server.url}/machines/toggler/i/s1", headers=server.headers({"sid": "s1"})
    ).json()
    assert (state["state"], state["publicContext"]) == ("on", {"toggleCount": 0})


def test_instance_routes_ask_the_machine_authorizer(matrix: Matrix) -> None:
    server = matrix.server
    stranger = server.headers({"sid": "mallory"})
    for method, path, body in (
        ("GET", "/machines/toggler/i/s1", None),
        ("POST", "/machines/toggler/i/s1/events", {"event": "toggle"}),
        ("POST", "/machines/toggler", {"slug": "someone-else"}),
    ):
        response = matrix.call(method, path, body, stranger)
        assert (response.status_code, response.json()["code"]) == (
            403,
            "rejected-by-machine-authorizer",
        ), path
    # Admin routes are not subject to the machine's authorizers.
    assert matrix.call("GET", "/machines/toggler/i/s1/admin", None, stranger).status_code == 200


def test_another_org_sees_nothing_of_this_one(matrix: Matrix) -> None:
    server = matrix.server
    other = _bearer(sign_token(*matrix.keys["other-org"], {"sid": "s1"}, expires_in_s=60))
    assert httpx.get(f"{server.url}/machines", headers=other).json() == {"machines": []}
    assert (
        matrix.call("POST", "/machines", {"slug": "toggler"}, other).status_code == 201
    )  # its own namespace
    assert matrix.call("GET", "/machines/toggler/i/s1", None, other).status_code in (404, 409)


def test_realtime_refuses_the_handshake_with_the_api_error(matrix: Matrix) -> None:
    import asyncio
    import json

    import websockets
    from websockets.exceptions import InvalidStatus

    server = matrix.server

    async def refusal(token: str) -> tuple[int, str]:
        try:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/rt?token={token}"):
                pass
        except InvalidStatus as exc:
            return exc.response.status_code, json.loads(exc.response.body)["code"]
        raise AssertionError("the handshake was accepted")

    no_scope = sign_token(*matrix.keys["no-scopes"], {"sid": "s1"}, expires_in_s=60)
    expired = server.token({"sid": "s1"}, ttl=-120)
    assert asyncio.run(refusal("garbage"))[0] == 401
    assert asyncio.run(refusal(expired))[0] == 401
    assert asyncio.run(refusal(no_scope)) == (403, "missing-scope")
