"""Typed errors: each refusal of the real server arrives as its class with the server's
stable code; the mapping itself is checked without a server."""

from __future__ import annotations

import pytest

from backstate.client import (
    ApiError,
    BadRequest,
    Client,
    Conflict,
    Forbidden,
    KeyAuth,
    MissingOrg,
    MissingScope,
    MissingUser,
    NoMigrationPath,
    NotFound,
    OrgHeaderRequired,
    PayloadTooLarge,
    RejectedByMachineAuthorizer,
    ServerError,
    Unauthorized,
    Unreachable,
)
from backstate.client._errors import error_for, error_from_response
from tests.server.test_e2e import Server, _free_port


def test_not_found(client: Client, name: str) -> None:
    with pytest.raises(NotFound) as machine:
        client.instances.get("no-such-machine", name)
    with pytest.raises(NotFound) as instance:
        client.instances.send_event("say", name, "say")
    assert (machine.value.status, machine.value.code) == (404, "machine-not-found")
    assert (instance.value.status, instance.value.code) == (404, "instance-not-found")


def test_conflict(client: Client, name: str) -> None:
    client.instances.create("say", name)
    with pytest.raises(Conflict) as duplicate:
        client.instances.create("say", name)
    assert (duplicate.value.status, duplicate.value.code, duplicate.value.parameter) == (
        409,
        "invalid-state",
        "slug",
    )
    with pytest.raises(Conflict):
        client.machines.create("say")


def test_forbidden(client: Client, server: Server, name: str) -> None:
    ci = client.keys.create(name, use="ci")
    with Client(server.url, auth=KeyAuth(ci.id, ci.key, {"sid": name})) as deployer:
        assert deployer.machines.get("say").slug == "say"
        with pytest.raises(MissingScope) as scope:
            deployer.instances.create("toggler", name)
    assert (scope.value.status, scope.value.code) == (403, "missing-scope")
    assert isinstance(scope.value, Forbidden)

    nobody = KeyAuth(server.creds["keyId"], server.creds["secret"])  # the toggler wants a sid
    with (
        Client(server.url, auth=nobody) as c,
        pytest.raises(RejectedByMachineAuthorizer) as rejected,
    ):
        c.instances.create("toggler", name)
    assert (rejected.value.status, rejected.value.code) == (403, "rejected-by-machine-authorizer")


def test_unauthorized(server: Server, name: str) -> None:
    with Client(server.url) as anonymous, pytest.raises(Unauthorized) as missing:
        anonymous.machines.list()
    assert (missing.value.status, missing.value.code) == (401, "missing-token")
    forged = KeyAuth(server.creds["keyId"], "sbsec_not-the-secret")
    with Client(server.url, auth=forged) as forger, pytest.raises(Unauthorized) as bad:
        forger.machines.list()
    assert bad.value.code == "bad-signature"

    def broken() -> str:
        raise OSError("the token service is down")

    with Client(server.url, auth=broken) as failing, pytest.raises(Unauthorized) as unavailable:
        failing.machines.list()
    assert unavailable.value.code == "token-unavailable"
    assert isinstance(unavailable.value.__cause__, OSError)


def test_bad_request_names_the_parameter(client: Client) -> None:
    with pytest.raises(BadRequest) as bad:
        client.instances.create("say", "not a valid name")
    assert (bad.value.status, bad.value.code, bad.value.parameter) == (
        400,
        "invalid-parameter",
        "slug",
    )
    assert "slug" in bad.value.message
    with pytest.raises(BadRequest) as syntax:
        client.machine_versions.create("say", "machine = (\n")
    assert syntax.value.code == "syntax-error"


def test_payload_too_large(client: Client, name: str) -> None:
    client.instances.create("say", name)
    with pytest.raises(PayloadTooLarge):
        client.instances.send_event("say", name, {"type": "say", "text": "x" * 1_100_000})


def test_unreachable() -> None:
    nowhere = f"http://127.0.0.1:{_free_port()}"
    with Client(nowhere, auth="token") as c, pytest.raises(Unreachable) as down:
        c.machines.list()
    assert (down.value.status, down.value.code) == (0, "unreachable")


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "specify-org", OrgHeaderRequired),
        (400, "no-migration-path", NoMigrationPath),
        (400, "invalid-parameter", BadRequest),
        (401, "token-expired", Unauthorized),
        (403, "missing-scope", MissingScope),
        (403, "rejected-by-machine-authorizer", RejectedByMachineAuthorizer),
        (403, "missing-user", MissingUser),
        (403, "missing-org", MissingOrg),
        (403, "something-new", Forbidden),
        (404, None, NotFound),
        (409, "invalid-state", Conflict),
        (413, "payload-too-large", PayloadTooLarge),
        (503, "store-unavailable", ServerError),
        (418, "teapot", ApiError),
        (404, "missing-scope", NotFound),  # a code with a class of another status: the status wins
    ],
)
def test_error_classes(status: int, code: str | None, expected: type[ApiError]) -> None:
    error = error_for(status, code, "message")
    assert type(error) is expected
    assert error.status == status
    assert error.code == (code or expected.default_code)


def test_error_bodies() -> None:
    plain = error_from_response(400, b'{"error":"bad","code":"invalid-parameter","parameter":"x"}')
    assert (plain.message, plain.code, plain.parameter) == ("bad", "invalid-parameter", "x")
    exchange = error_from_response(
        400, b'{"error":"invalid_request","error_description":"expired","code":"token-expired"}'
    )
    assert (type(exchange), exchange.message, exchange.code) == (
        BadRequest,
        "expired",
        "token-expired",
    )
    garbage = error_from_response(502, b"<html>bad gateway</html>")
    assert (type(garbage), garbage.code, garbage.message) == (
        ServerError,
        "server-error",
        "<html>bad gateway</html>",
    )
    empty = error_from_response(404, b"")
    assert (type(empty), empty.code, empty.message) == (NotFound, "not-found", "HTTP 404")
