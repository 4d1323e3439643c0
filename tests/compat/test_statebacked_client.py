"""Wire compatibility: State Backed's published `@statebacked/client`, unchanged, on Node,
against a real `backstate serve` process (tests/compat/client_driver.mjs runs the steps).

Each gap found is its own test, marked xfail(strict=True) with the request, what the
client expects (from its source) and what the server does, so that fixing it shows up.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.server.test_e2e import ROOT, Server

NODE = shutil.which("node")
CLIENT_DIR = ROOT / ".cache" / "statebacked-client"
DRIVER = Path(__file__).with_name("client_driver.mjs")
TOGGLER_SOURCE = (ROOT / "examples" / "toggler.py").read_text()
# A later version whose state tree differs (one more state), so no migration is implied.
TOGGLER_WITH_RETIRED = TOGGLER_SOURCE.replace(
    '"off": {"on": {"toggle": "on"}},', '"off": {"on": {"toggle": "on"}},\n"retired": {},'
)
assert TOGGLER_WITH_RETIRED != TOGGLER_SOURCE
MIGRATION = """
def upgrade_state(path, context):
    return path


def upgrade_context(old_paths, new_paths, context):
    return context
"""

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not (CLIENT_DIR / ".complete").exists():
        pytest.fail(f"@statebacked/client is not in {CLIENT_DIR}: run scripts/fetch-suites")
    srv = Server(tmp_path_factory.mktemp("compat"))
    # One server serves the whole module: drain its log, or a full pipe blocks it.
    threading.Thread(target=_drain, args=(srv,), daemon=True).start()
    try:
        yield srv
    finally:
        srv.stop()


def _drain(srv: Server) -> None:
    with contextlib.suppress(Exception):
        for _ in srv.process.stdout or ():
            pass


def drive(
    server: Server,
    clients: dict[str, dict[str, Any]],
    steps: list[dict[str, Any]],
    fail_fast: bool = False,
) -> list[dict[str, Any]]:
    """Runs the steps in one Node process; one {ok, value | error} per step."""
    scenario = {"apiHost": server.url, "clientDir": str(CLIENT_DIR), "clients": clients}
    scenario.update(steps=steps, failFast=fail_fast)
    with subprocess.Popen(
        [str(NODE), str(DRIVER)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    ) as node:
        try:
            out, err = node.communicate(json.dumps(scenario), timeout=20)
        except subprocess.TimeoutExpired:
            node.kill()
            out, err = node.communicate()
            raise AssertionError(f"the driver hung; it printed:\n{out}{err}") from None
    assert node.returncode == 0, err
    results = [json.loads(line) for line in out.splitlines()]
    assert [r["step"] for r in results] == list(range(len(steps))), out
    return results


def as_sid(server: Server, sid: str, **opts: Any) -> dict[str, Any]:
    """A client whose token our admin key signed, like @statebacked/token's signToken."""
    spec: dict[str, Any] = {"config": {"token": server.token({"sid": sid})}}
    if opts:
        spec["opts"] = opts
    return spec


def call(path: str, *args: Any, client: str = "default") -> dict[str, Any]:
    return {"op": "call", "client": client, "path": path, "args": list(args)}


def ok(result: dict[str, Any]) -> Any:
    assert result["ok"], result
    return result["value"]


def failed(result: dict[str, Any], cls: str, status: int, code: str | None = None) -> None:
    assert not result["ok"], result
    error = result["error"]
    assert cls in error["classes"] and error["status"] == status, error
    if code is not None:
        assert error["code"] == code, error


def state(value: Any) -> tuple[Any, Any]:
    return value["state"], value["publicContext"]


# -- instances ---------------------------------------------------------------------------------


def test_instances_create_get_or_create_send_and_errors(server: Server) -> None:
    r = drive(
        server,
        {
            "default": as_sid(server, "i1"),
            "other": as_sid(server, "i2"),
            "new": as_sid(server, "i3"),
        },
        [
            call("machineInstances.create", "toggler", {"slug": "i1"}),
            call("machineInstances.create", "toggler", {"slug": "i1"}),
            call("machineInstances.getOrCreate", "toggler", "i1", {}),
            call("machineInstances.getOrCreate", "toggler", "i3", {}, client="new"),
            call("machineInstances.get", "toggler", "i3", client="new"),
            call("machineInstances.sendEvent", "toggler", "i1", {"event": "toggle"}),
            call("machineInstances.sendEvent", "toggler", "i1", {"event": {"type": "toggle"}}),
            call("machineInstances.sendEvent", "toggler", "i1", {"event": "toggle"}),
            call("machineInstances.get", "toggler", "i1"),
            call("machineInstances.get", "toggler", "i1", client="other"),
            call(
                "machineInstances.sendEvent", "toggler", "i1", {"event": "toggle"}, client="other"
            ),
            call("machineInstances.create", "toggler", {"slug": "not-i2"}, client="other"),
            call("machineInstances.get", "toggler", "nobody"),
            call("machineInstances.get", "no-such-machine", "i1"),
            call("machineInstances.list", "toggler"),
            call("machineInstances.listTransitions", "toggler", "i1"),
            call("machineInstances.admin.get", "toggler", "i1"),
        ],
    )
    created = ok(r[0])
    assert state(created) == ("on", {"toggleCount": 0})
    assert (created["done"], created["tags"], created["states"]) == (False, [], ["on"])
    assert isinstance(created["ts"], int)
    failed(r[1], "ConflictError", 409)
    assert ok(r[2]) == created  # existing: read, not created again
    assert state(ok(r[3])) == ("on", {"toggleCount": 0})  # missing: 404, then created
    assert state(ok(r[4])) == ("on", {"toggleCount": 0})
    assert state(ok(r[5])) == ("off", {"toggleCount": 1})
    assert state(ok(r[6])) == ("on", {"toggleCount": 1})
    sent = ok(r[7])
    assert state(sent) == ("off", {"toggleCount": 2}) and sent["ts"] > created["ts"]
    assert ok(r[8]) == sent
    for denied in r[9:12]:
        failed(denied, "RejectedByMachineAuthorizerError", 403, "rejected-by-machine-authorizer")
    failed(r[12], "NotFoundError", 404)
    failed(r[13], "NotFoundError", 404)
    listed = {i["slug"]: i for i in ok(r[14])["instances"]}
    assert {"i1", "i3"} <= set(listed) and listed["i1"]["status"] == "running"
    assert "cursor" not in ok(r[14])
    transitions = ok(r[15])["transitions"]
    assert [t["state"] for t in transitions] == ["on", "off", "on", "off"]
    assert [t["event"]["type"] for t in transitions][1:] == ["toggle"] * 3
    admin = ok(r[16])
    assert admin["context"] == {"public": {"toggleCount": 2}}
    assert (admin["state"], admin["status"], admin["done"]) == ("off", "running", False)


def test_dangerous_status_and_delete(server: Server) -> None:
    r = drive(
        server,
        {"default": as_sid(server, "d1")},
        [
            call("machineInstances.create", "toggler", {"slug": "d1"}),
            call("machineInstances.dangerously.setStatus", "toggler", "d1", {"status": "paused"}),
            call("machineInstances.sendEvent", "toggler", "d1", {"event": "toggle"}),
            call("machineInstances.dangerously.setStatus", "toggler", "d1", {"status": "running"}),
            call("machineInstances.sendEvent", "toggler", "d1", {"event": "toggle"}),
            call(
                "machineInstances.dangerously.delete",
                "toggler",
                "d1",
                {"dangerDataWillBeDeletedForever": True},
            ),
            call("machineInstances.get", "toggler", "d1"),
        ],
    )
    ok(r[0])
    assert ok(r[1]) is None  # 204
    failed(r[2], "ConflictError", 409, "invalid-state")
    assert ok(r[3]) is None
    assert state(ok(r[4])) == ("off", {"toggleCount": 1})
    assert ok(r[5]) is None  # the client's own HMAC confirmation was accepted
    failed(r[6], "NotFoundError", 404)


def test_org_header_and_act_as(server: Server) -> None:
    org = server.creds["orgId"]
    r = drive(
        server,
        {
            "default": as_sid(server, "o1", orgId=org),
            "wrong": as_sid(server, "o1", orgId="org_not-this-one"),
            "admin": {"config": {"token": server.token({})}, "opts": {"actAs": {"sid": "o1"}}},
        },
        [
            call("machineInstances.create", "toggler", {"slug": "o1"}),
            {"op": "subscribe", "id": "s", "machine": "toggler", "instance": "o1"},
            {"op": "wait", "id": "s", "count": 1},
            call("machineInstances.get", "toggler", "o1", client="wrong"),
            call(
                "machineInstances.sendEvent", "toggler", "o1", {"event": "toggle"}, client="admin"
            ),
        ],
    )
    ok(r[0])
    assert state(ok(r[2])[0]["update"]) == ("on", {"toggleCount": 0})  # ?x-statebacked-org-id=
    failed(r[3], "MissingOrgError", 403, "missing-org")
    assert state(ok(r[4])) == ("off", {"toggleCount": 1})  # x-statebacked-act


# -- realtime ----------------------------------------------------------------------------------


def test_subscribe_over_rt_gets_current_state_then_updates(server: Server) -> None:
    r = drive(
        server,
        {"default": as_sid(server, "r1"), "other": as_sid(server, "r2")},
        [
            call("machineInstances.create", "toggler", {"slug": "r1"}),
            {"op": "subscribe", "id": "mine", "machine": "toggler", "instance": "r1"},
            {"op": "wait", "id": "mine", "count": 1},
            call("machineInstances.sendEvent", "toggler", "r1", {"event": "toggle"}),
            {"op": "wait", "id": "mine", "count": 2},
            {"op": "subscribe", "id": "theirs", "machine": "toggler", "instance": "r1"}
            | {"client": "other"},
            {"op": "wait", "id": "theirs", "count": 1},
            {"op": "subscribe", "id": "missing", "machine": "toggler", "instance": "nobody"},
            {"op": "wait", "id": "missing", "count": 1},
            {"op": "unsubscribe", "id": "mine"},
            call("machineInstances.sendEvent", "toggler", "r1", {"event": "toggle"}),
            {"op": "wait", "id": "mine", "count": 3, "timeoutMs": 500},
        ],
    )
    ok(r[0])
    first, second = (entry["update"] for entry in ok(r[4]))
    assert state(first) == ("on", {"toggleCount": 0}) and first["states"] == ["on"]
    assert state(second) == ("off", {"toggleCount": 1}) and second["ts"] == ok(r[3])["ts"]
    assert (second["done"], second["tags"]) == (False, [])
    [denied] = ok(r[6])
    assert "RejectedByMachineAuthorizerError" in denied["error"]["classes"]
    assert denied["error"]["status"] == 403
    [missing] = ok(r[8])
    assert "NotFoundError" in missing["error"]["classes"]
    assert not r[11]["ok"] and len(r[11]["value"]) == 2  # nothing after unsubscribing


def test_a_subscriber_that_loses_read_access_gets_its_error(server: Server) -> None:
    base = server.deploy("room", ROOT / "tests" / "server" / "room.py")
    r = drive(
        server,
        {"default": as_sid(server, "alice"), "bob": as_sid(server, "bob")},
        [
            call("machineInstances.create", "room", {"slug": "r"}),
            {"op": "subscribe", "id": "bob", "machine": "room", "instance": "r", "client": "bob"},
            {"op": "wait", "id": "bob", "count": 1},
            call(
                "machineInstances.sendEvent", "room", "r", {"event": {"type": "kick", "who": "bob"}}
            ),
            {"op": "wait", "id": "bob", "errors": 1},
            call("machineInstances.sendEvent", "room", "r", {"event": "ping"}),
            {"op": "wait", "id": "bob", "count": 3, "timeoutMs": 500},
        ],
    )
    assert base.endswith("/machines/room")
    ok(r[0])
    first, lost = ok(r[4])
    assert first["update"]["publicContext"] == {"pings": 0}
    assert "RejectedByMachineAuthorizerError" in lost["error"]["classes"]
    assert lost["error"]["status"] == 403
    # Nothing after the error: the ping is not shown to bob.
    assert not r[6]["ok"] and len(r[6]["value"]) == 2


def test_two_subscribers_to_one_instance_on_one_socket(server: Server) -> None:
    r = drive(
        server,
        {"default": as_sid(server, "r3")},
        [
            call("machineInstances.create", "toggler", {"slug": "r3"}),
            {"op": "subscribe", "id": "a", "machine": "toggler", "instance": "r3"},
            {"op": "wait", "id": "a", "count": 1},
            {"op": "subscribe", "id": "b", "machine": "toggler", "instance": "r3"},
            {"op": "wait", "id": "b", "count": 1, "timeoutMs": 1000},
            {"op": "unsubscribe", "id": "a"},
            {"op": "sleep", "ms": 100},
            call("machineInstances.sendEvent", "toggler", "r3", {"event": "toggle"}),
            {"op": "wait", "id": "b", "count": 2, "timeoutMs": 1000},
        ],
    )
    ok(r[2])
    assert state(ok(r[4])[0]["update"]) == ("on", {"toggleCount": 0})
    assert state(ok(r[8])[-1]["update"]) == ("off", {"toggleCount": 1})


def test_actor_follows_the_instance_and_reports_send_errors(server: Server) -> None:
    r = drive(
        server,
        {"default": as_sid(server, "a1")},
        [
            {"op": "actor", "id": "x", "machine": "toggler", "instance": "a1", "create": {}},
            {"op": "wait", "id": "x", "count": 1},
            {"op": "actorSend", "id": "x", "event": "toggle"},
            {"op": "wait", "id": "x", "count": 3},
            call("machineInstances.dangerously.setStatus", "toggler", "a1", {"status": "paused"}),
            {"op": "actorSend", "id": "x", "event": "toggle"},
            {"op": "wait", "id": "x", "errors": 1},
        ],
    )
    made = ok(r[0])
    assert made["id"] == "toggler/a1"
    assert (made["snapshot"]["value"], made["snapshot"]["context"]) == (
        "on",
        {"public": {"toggleCount": 0}},
    )
    assert ok(r[2]) == {"inFlightEvents": 1}
    # the current state over /rt, then the event's result and its /rt update, either order
    updates = [entry["update"] for entry in ok(r[3])]
    assert (updates[0]["value"], updates[-1]["value"]) == ("on", "off")
    assert updates[-1]["context"] == {"public": {"toggleCount": 1}}
    ok(r[4])
    [error] = [entry["error"] for entry in ok(r[6]) if "error" in entry]
    assert "ActorEventSendingError" in error["classes"] and error["event"] == "toggle"
    assert error["message"].startswith("error sending event: ")  # the 409, as a message


# -- machines and versions ---------------------------------------------------------------------


def test_machines_and_versions(server: Server) -> None:
    r = drive(
        server,
        {"default": as_sid(server, "m1")},
        [
            call("machines.list"),
            call("machines.get", "toggler"),
            call("machineVersions.list", "toggler"),
            call("machines.create", "counter"),
            call("machines.create", "counter"),
            call(
                "machineVersions.create",
                "counter",
                {"clientInfo": "1.0", "makeCurrent": True, "code": TOGGLER_SOURCE},
            ),
            call(
                "machineVersions.create",
                "counter",
                {
                    "clientInfo": "1.1",
                    "makeCurrent": True,
                    "gzippedCode": {"$gzip": TOGGLER_SOURCE},
                },
            ),
            call("machineVersions.list", "counter"),
            call("machines.get", "counter"),
            call("machineInstances.create", "counter", {"slug": "m1"}),
            call("machines.get", "no-such-machine"),
        ],
    )
    machines = {m["slug"]: m for m in ok(r[0])["machines"]}
    current = machines["toggler"]["currentVersion"]
    assert set(current) >= {"id", "createdAt", "clientInfo"}
    assert ok(r[1])["machine"]["currentVersion"] == current
    assert [v["id"] for v in ok(r[2])["versions"]] == [current["id"]]
    assert ok(r[3]) is None  # 201
    failed(r[4], "ConflictError", 409)
    v1, v2 = ok(r[5])["machineVersionId"], ok(r[6])["machineVersionId"]
    versions = {v["id"]: v["clientInfo"] for v in ok(r[7])["versions"]}
    assert versions == {v1: "1.0", v2: "1.1"}
    assert ok(r[8])["machine"]["currentVersion"]["id"] == v2
    assert state(ok(r[9])) == ("on", {"toggleCount": 0})
    failed(r[10], "NotFoundError", 404)


def test_created_at_is_an_iso_timestamp(server: Server) -> None:
    r = drive(
        server,
        {"default": as_sid(server, "t1")},
        [
            call("machineInstances.create", "toggler", {"slug": "t1"}),
            call("machines.list"),
            call("machineVersions.list", "toggler"),
            call("machineInstances.list", "toggler"),
            call("machineInstances.listTransitions", "toggler", "t1"),
            call("machineInstances.admin.get", "toggler", "t1"),
        ],
    )
    stamps = [ok(r[1])["machines"][0]["createdAt"], ok(r[2])["versions"][0]["createdAt"]]
    stamps += [ok(r[3])["instances"][0]["createdAt"], ok(r[4])["transitions"][0]["createdAt"]]
    stamps.append(ok(r[5])["createdAt"])
    for stamp in stamps:
        assert isinstance(stamp, str) and time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")


def test_instance_machine_version_is_version_info(server: Server) -> None:
    r = drive(
        server,
        {"default": as_sid(server, "t2")},
        [
            call("machineInstances.create", "toggler", {"slug": "t2"}),
            call("machineInstances.list", "toggler"),
            call("machineInstances.admin.get", "toggler", "t2"),
        ],
    )
    listed = next(i for i in ok(r[1])["instances"] if i["slug"] == "t2")
    for version in (listed["machineVersion"], ok(r[2])["machineVersion"]):
        assert set(version) >= {"id", "createdAt", "clientInfo"}


def test_delete_machine(server: Server) -> None:
    r = drive(
        server,
        {"default": as_sid(server, "x")},
        [
            call("machines.create", "doomed"),
            call("machines.dangerously.delete", "doomed", {"dangerDataWillBeDeletedForever": True}),
            call("machines.get", "doomed"),
        ],
    )
    ok(r[0])
    assert ok(r[1]) is None
    failed(r[2], "NotFoundError", 404)


def test_update_desired_version_and_migrations(server: Server) -> None:
    r = drive(
        server,
        {"default": as_sid(server, "u1")},
        [
            call("machines.create", "upgrader"),
            call(
                "machineVersions.create", "upgrader", {"makeCurrent": True, "code": TOGGLER_SOURCE}
            ),
            call("machineInstances.create", "upgrader", {"slug": "u1"}),
            call(
                "machineVersions.create",
                "upgrader",
                {"makeCurrent": True, "code": TOGGLER_WITH_RETIRED},
            ),
        ],
    )
    ok(r[2])
    source, target = ok(r[1])["machineVersionId"], ok(r[3])["machineVersionId"]
    update = call(
        "machineInstances.admin.updateDesiredVersion",
        "upgrader",
        "u1",
        {"targetMachineVersionId": target},
    )
    again = drive(server, {"default": as_sid(server, "u1")}, [update])
    failed(again[0], "NoMigrationPathError", 400, "no-migration-path")
    # The client's one-call create: provisional create, upload, finalize.
    r = drive(
        server,
        {"default": as_sid(server, "u1")},
        [
            call(
                "machineVersionMigrations.create",
                "upgrader",
                {"fromMachineVersionId": source, "toMachineVersionId": target, "code": MIGRATION},
            ),
            update,
            call("machineInstances.sendEvent", "upgrader", "u1", {"event": "toggle"}),
            call("machineInstances.admin.get", "upgrader", "u1"),
        ],
    )
    assert set(ok(r[0])) >= {"machineVersionMigrationId"}
    assert ok(r[1]) is None  # 201, no body
    assert ok(r[2])["state"] == "off"
    admin = ok(r[3])
    assert admin["machineVersion"]["id"] == target and "desiredMachineVersion" not in admin


# -- logs --------------------------------------------------------------------------------------


def test_logs_retrieve(server: Server) -> None:
    r = drive(
        server,
        {"default": as_sid(server, "l1")},
        [call("logs.retrieve", {"$date": "2020-01-01T00:00:00.000Z"}, {"machineName": "toggler"})],
    )
    page = ok(r[0])
    assert isinstance(page["maxTimestamp"], str) and isinstance(page["logs"], list)


def test_logs_watch_pages_without_repeating_or_losing_entries(server: Server) -> None:
    # A page boundary inside a millisecond (99 + 3), a millisecond holding more than a
    # page (250), then one more entry.
    start, messages = server.write_logs("paged", [99, 3, 250, 1])
    since = datetime.fromtimestamp(start / 1000, UTC).isoformat().replace("+00:00", "Z")
    r = drive(
        server,
        {"default": {"config": {"token": server.token({})}}},
        [
            {
                "op": "watchLogs",
                "from": since,
                "filter": {"machineName": "paged"},
                "count": len(messages),
                "extraMs": 1000,
            },
            call("logs.retrieve", {"$date": since}, {"machineName": "paged"}),
        ],
    )
    watched = ok(r[0])
    assert [e["log"] for e in watched] == messages  # each once, in order, then quiet
    assert {e["machineName"] for e in watched} == {"paged"}
    first = ok(r[1])
    assert len(first["logs"]) == 99  # the page ends before the millisecond it would split


# -- identity ----------------------------------------------------------------------------------


def test_token_exchange_with_an_identity_provider(server: Server) -> None:
    secret = b"compat-idp-secret-of-32-bytes!!!"
    issuer, audience = "https://idp.compat.example/", "backstate-compat"
    now = int(time.time())
    idp_token = jwt.encode(
        {"iss": issuer, "aud": audience, "sub": "x1", "iat": now, "exp": now + 600},
        secret,
        algorithm="HS256",
    )
    r = drive(
        server,
        {
            "admin": {"config": {"token": server.token({})}},
            "someone": as_sid(server, "x2"),
            "user": {
                "config": {
                    "identityProviderToken": idp_token,
                    "orgId": server.creds["orgId"],
                    "tokenProviderService": "compat",
                }
            },
        },
        [
            call(
                "identityProviders.upsert",
                {
                    "iss": issuer,
                    "aud": audience,
                    "algs": ["HS256"],
                    "key": base64.urlsafe_b64encode(secret).decode().rstrip("="),
                    "mapping": {"sub.$": "$.sub"},
                },
                client="admin",
            ),
            call(
                "tokenProviders.upsert",
                {
                    "keyId": server.creds["keyId"],
                    "service": "compat",
                    "mapping": {"sid.$": "$.sub"},
                },
                client="admin",
            ),
            call("machineInstances.create", "toggler", {"slug": "x1"}, client="user"),
            call("machineInstances.sendEvent", "toggler", "x1", {"event": "toggle"}, client="user"),
            call("machineInstances.create", "toggler", {"slug": "x2"}, client="someone"),
            call("identityProviders.list", client="admin"),
            call("tokenProviders.list", client="admin"),
            call("machineInstances.get", "toggler", "x2", client="user"),
        ],
        fail_fast=True,
    )
    assert ok(r[0]) is None and ok(r[1]) is None
    assert state(ok(r[2])) == ("on", {"toggleCount": 0})
    assert state(ok(r[3])) == ("off", {"toggleCount": 1})
    ok(r[4])
    assert issuer in [i.get("iss") for i in ok(r[5])["idps"]]
    assert "compat" in [p["service"] for p in ok(r[6])["tokenProviders"]]
    failed(r[7], "RejectedByMachineAuthorizerError", 403)  # the exchanged sid is x1's


def test_anonymous_sessions(server: Server) -> None:
    anonymous = {"anonymous": {"orgId": server.creds["orgId"], "sessionId": "anon-1"}}
    r = drive(
        server,
        {"default": {"config": anonymous}, "someone": as_sid(server, "anon-2")},
        [
            call("machineInstances.create", "toggler", {"slug": "anon-1"}),
            {"op": "subscribe", "id": "s", "machine": "toggler", "instance": "anon-1"},
            {"op": "wait", "id": "s", "count": 1},
            call("machineInstances.sendEvent", "toggler", "anon-1", {"event": "toggle"}),
            {"op": "wait", "id": "s", "count": 2},
            call("machineInstances.create", "toggler", {"slug": "anon-2"}, client="someone"),
            call("machineInstances.get", "toggler", "anon-2"),
        ],
        fail_fast=True,
    )
    assert state(ok(r[0])) == ("on", {"toggleCount": 0})
    assert state(ok(r[4])[1]["update"]) == ("off", {"toggleCount": 1})
    ok(r[5])
    failed(r[6], "RejectedByMachineAuthorizerError", 403)  # the session's sid is anon-1's


def test_keys_orgs_and_identity_admin(server: Server) -> None:
    r = drive(
        server,
        {"default": {"config": {"token": server.token({})}}},
        [
            call("orgs.list"),
            call("keys.create", {"name": "ci key", "use": "ci"}),
            call("keys.list"),
            call(
                "identityProviders.upsert",
                {
                    "iss": "https://gone.example/",
                    "algs": ["HS256"],
                    "key": base64.urlsafe_b64encode(b"k" * 32).decode().rstrip("="),
                    "mapping": {"sub.$": "$.sub"},
                },
            ),
            call("identityProviders.delete", {"iss": "https://gone.example/"}),
            call("identityProviders.list"),
            call(
                "tokenProviders.upsert",
                {"keyId": server.creds["keyId"], "service": "gone", "mapping": {"a": 1}},
            ),
            call("tokenProviders.delete", "gone"),
            call("tokenProviders.list"),
        ],
    )
    assert server.creds["orgId"] in [o["id"] for o in ok(r[0])["orgs"]]
    created = ok(r[1])
    assert set(created) >= {"id", "key"}
    assert created["id"] in [k["id"] for k in ok(r[2])["keys"]]
    assert [ok(r[i]) for i in (3, 4, 6, 7)] == [None] * 4  # 204s
    assert "https://gone.example/" not in [i.get("iss") for i in ok(r[5])["idps"]]
    assert "gone" not in [p["service"] for p in ok(r[8])["tokenProviders"]]
    admin = {"default": {"config": {"token": server.token({})}}}
    r = drive(server, admin, [call("keys.delete", created["id"]), call("keys.list")])
    assert ok(r[0]) is None
    assert created["id"] not in [k["id"] for k in ok(r[1])["keys"]]
