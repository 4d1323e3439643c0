"""Versions, migrations and indexes over HTTP against a real server: State Backed's
tic-tac-toe state-rename migration end to end, and index queries."""

from __future__ import annotations

from typing import Any

import httpx

from .test_e2e import ROOT, Server

TTT = (ROOT / "examples" / "tic_tac_toe.py").read_text()
# The example's first version called the o side "y" (see examples/migrations).
TTT_V1 = TTT.replace('**_turn("x"), **_turn("o")', '**_turn("x", other="y"), **_turn("o", "y")')
MIGRATION = (ROOT / "examples" / "migrations" / "tic_tac_toe_y_to_o.py").read_text()


def test_tic_tac_toe_state_rename_migration(server: Server) -> None:
    assert TTT_V1 != TTT
    admin = server.headers({"sub": "admin"})
    p1, p2 = server.headers({"sid": "p1"}), server.headers({"sid": "p2"})
    base = f"{server.url}/machines/ttt"
    assert httpx.post(f"{server.url}/machines", json={"slug": "ttt"}, headers=admin).is_success
    v1 = httpx.post(f"{base}/v", json={"code": TTT_V1}, headers=admin).json()["machineVersionId"]
    game = httpx.post(base, json={"slug": "g", "context": {"player1Id": "p1"}}, headers=p1)
    assert game.status_code == 200, game.text

    def send(who: dict[str, str], event: Any) -> httpx.Response:
        return httpx.post(f"{base}/i/g/events", json={"event": event}, headers=who)

    send(p2, {"type": "join", "playerId": "p2"})
    moved = send(p1, {"type": "move", "row": 0, "column": 0})
    assert moved.json()["state"] == {"Playing": "Awaiting y move"}

    # v2 (the example as it is today), not current yet, so games stay on v1.
    v2 = httpx.post(f"{base}/v", json={"code": TTT, "makeCurrent": False}, headers=admin).json()[
        "machineVersionId"
    ]
    refused = httpx.put(f"{base}/i/g/v", json={"targetMachineVersionId": v2}, headers=admin)
    assert (refused.status_code, refused.json()["code"]) == (400, "no-migration-path")

    # State Backed's three steps: provisional create, upload, finalize.
    provisional = httpx.post(
        f"{base}/migrations",
        json={"fromMachineVersionId": v1, "toMachineVersionId": v2},
        headers=admin,
    ).json()
    assert set(provisional) == {"machineVersionMigrationId", "codeUploadUrl", "codeUploadFields"}
    uploaded = httpx.post(
        provisional["codeUploadUrl"],
        data=provisional["codeUploadFields"],
        files={"file": ("migration.py", MIGRATION.encode())},
    )
    assert uploaded.status_code == 204, uploaded.text
    final = httpx.put(
        f"{base}/migrations/{provisional['machineVersionMigrationId']}", headers=admin
    )
    assert final.status_code == 200, final.text
    migration_id = final.json()["machineVersionMigrationId"]

    desired = httpx.put(f"{base}/i/g/v", json={"targetMachineVersionId": v2}, headers=admin)
    assert desired.status_code == 201, desired.text
    view = httpx.get(f"{base}/i/g/admin", headers=admin).json()
    assert (view["machineVersion"]["id"], view["desiredMachineVersion"]["id"]) == (v1, v2)
    assert view["state"] == {"Playing": "Awaiting y move"}

    # The next event upgrades first, then runs on v2 (whose authorizer knows "o").
    joined = send(p1, {"type": "join", "playerId": "p1"})
    assert joined.json()["state"] == {"Playing": "Awaiting o move"}
    moved = send(p2, {"type": "move", "row": 1, "column": 1})
    assert moved.status_code == 200, moved.text
    assert moved.json()["state"] == {"Playing": "Awaiting x move"}
    view = httpx.get(f"{base}/i/g/admin", headers=admin).json()
    assert view["machineVersion"]["id"] == v2 and "desiredMachineVersion" not in view
    transitions = httpx.get(f"{base}/i/g/events", headers=admin).json()["transitions"]
    events = [t["event"] for t in transitions]
    upgrade = next(e for e in events if e["type"] == "statebacked.upgrade")
    assert upgrade == {
        "type": "statebacked.upgrade",
        "fromMachineVersionId": v1,
        "toMachineVersionId": v2,
        "migrationPath": [migration_id],
    }
    assert [e["type"] for e in events][-3:] == ["statebacked.upgrade", "join", "move"]


def test_migration_and_upgrade_errors(server: Server) -> None:
    admin = server.headers({"sub": "admin"})
    base = server.deploy("switch", "toggler.py")
    v1 = httpx.get(f"{base}/v", headers=admin).json()["versions"][0]["id"]
    source = (ROOT / "examples" / "toggler.py").read_text()
    v2 = httpx.post(f"{base}/v", json={"code": source, "makeCurrent": False}, headers=admin).json()[
        "machineVersionId"
    ]

    def error(response: httpx.Response) -> tuple[int, str]:
        return response.status_code, response.json()["code"]

    def migrate(body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{base}/migrations", json=body, headers=admin)

    assert error(migrate({"fromMachineVersionId": v1})) == (400, "invalid-parameter")
    assert error(migrate({"fromMachineVersionId": v1, "toMachineVersionId": "ver_nope"})) == (
        404,
        "machine-version-not-found",
    )
    assert error(migrate({"fromMachineVersionId": v1, "toMachineVersionId": v1})) == (
        400,
        "invalid-parameter",
    )
    ids = {"fromMachineVersionId": v1, "toMachineVersionId": v2}

    def migrate_now(code: str) -> httpx.Response:
        # The code in the provisional body counts as uploaded: finalize at once.
        signed = migrate({**ids, "code": code}).json()["machineVersionMigrationId"]
        return httpx.put(f"{base}/migrations/{signed}", headers=admin)

    assert error(migrate_now("def upgrade_state(p, c):\n    return p\n")) == (
        400,
        "missing-export",
    )
    assert error(migrate_now("def upgrade_state(p, c):\n  return (\n")) == (400, "syntax-error")
    assert error(httpx.put(f"{base}/migrations/upl_nothing", headers=admin)) == (
        404,
        "upload-not-found",
    )
    created = httpx.post(base, json={"slug": "t1"}, headers=server.headers({"sid": "t1"}))
    assert created.status_code == 200
    assert error(
        httpx.put(f"{base}/i/t1/v", json={"targetMachineVersionId": "ver_nope"}, headers=admin)
    ) == (404, "machine-version-not-found")
    assert error(httpx.put(f"{base}/i/t1/v", json={}, headers=admin)) == (400, "invalid-parameter")
    assert error(
        httpx.put(f"{base}/i/nope/v", json={"targetMachineVersionId": v2}, headers=admin)
    ) == (404, "instance-not-found")
    # A migration that raises leaves the instance where it was, with a log line.
    bad = "def upgrade_state(p, c):\n    raise ValueError('no')\n\n" + (
        "def upgrade_context(o, n, c):\n    return c\n"
    )
    assert migrate_now(bad).status_code == 200
    failed = httpx.put(
        f"{base}/i/t1/v", json={"targetMachineVersionId": v2, "upgradeNow": True}, headers=admin
    )
    assert (failed.status_code, failed.json()["code"]) == (400, "migration-failed")
    assert "ValueError" in failed.json()["error"]
    missing = httpx.put(f"{base}/i/nope/v", json={"targetMachineVersionId": v2}, headers=admin)
    assert "org_" not in missing.json()["error"], missing.json()  # no internal names
    view = httpx.get(f"{base}/i/t1/admin", headers=admin).json()
    assert view["machineVersion"]["id"] == v1 and "desiredMachineVersion" not in view
    logs = httpx.get(
        f"{server.url}/logs",
        params={"from": "2020-01-01T00:00:00Z", "machine": "switch"},
        headers=admin,
    ).json()["logs"]
    assert any("upgrade from" in line["log"] and "ValueError" in line["log"] for line in logs)


def test_indexes_over_http(server: Server) -> None:
    admin = server.headers({"sub": "admin"})
    created = httpx.post(
        f"{server.url}/machines",
        json={"slug": "lamp", "indexes": ["count", "state"]},
        headers=admin,
    )
    assert created.status_code == 201
    base = f"{server.url}/machines/lamp"
    source = (ROOT / "examples" / "toggler.py").read_text()

    def version(selectors: Any) -> httpx.Response:
        return httpx.post(
            f"{base}/v", json={"code": source, "indexSelectors": selectors}, headers=admin
        )

    assert version({"nope": "$.x"}).json()["code"] == "invalid-index-selector"
    assert version({"count": "$.["}).json()["code"] == "invalid-index-selector"
    assert version(["$.x"]).json()["code"] == "invalid-parameter"
    ok = version({"count": "$.public.toggleCount", "state": "@state"})
    assert ok.status_code == 200, ok.text
    for i in range(5):
        who = server.headers({"sid": f"s{i}"})
        assert httpx.post(base, json={"slug": f"s{i}"}, headers=who).status_code == 200
        for _ in range(i):
            httpx.post(f"{base}/i/s{i}/events", json={"event": "toggle"}, headers=who)

    def query(index: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{base}/indexes/{index}/query", params=params, headers=admin)

    # toggleCount counts the turns to "off": 0, 1, 1, 2, 2 for s0..s4.
    page = query("count", op="gte", value="2", type="number").json()
    assert page == {"instances": [{"indexValue": 2, "slug": "s3"}, {"indexValue": 2, "slug": "s4"}]}
    off = query("state", op="eq", value="off").json()["instances"]
    assert [i["slug"] for i in off] == ["s1", "s3"]
    first = query("count", type="number", dir="desc", limit=2).json()
    assert [i["slug"] for i in first["instances"]] == ["s4", "s3"]
    rest = query("count", dir="desc", limit=2, cursor=first["cursor"]).json()
    assert [i["slug"] for i in rest["instances"]] == ["s2", "s1"]

    def error(response: httpx.Response) -> tuple[int, str]:
        return response.status_code, response.json()["code"]

    assert error(query("nope")) == (404, "index-not-found")
    assert error(query("count", op="eq")) == (400, "invalid-parameter")
    assert error(query("count", op="eq", value="x", type="number")) == (400, "invalid-parameter")
    assert error(query("count", dir="up")) == (400, "invalid-parameter")
    assert error(query("count", limit="lots")) == (400, "invalid-parameter")
    assert error(query("count", cursor="%%%")) == (400, "invalid-parameter")
