"""State Backed's three-step version flow: provisional create, upload, finalize."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx

from .test_e2e import ROOT, Server


def _provision(server: Server, headers: dict[str, str], gzipped: bool = False) -> dict[str, object]:
    url = f"{server.url}/machines/flow/v" + ("?gzip" if gzipped else "")
    r = httpx.post(url, json={}, headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_provisional_upload_and_finalize(server: Server) -> None:
    me = server.headers({"sid": "x"})
    assert (
        httpx.post(f"{server.url}/machines", json={"slug": "flow"}, headers=me).status_code == 201
    )
    source = (ROOT / "examples" / "toggler.py").read_text()
    for gzipped in (False, True):
        pending = _provision(server, me, gzipped)
        data = gzip.compress(source.encode()) if gzipped else source.encode()
        fields = {**pending["codeUploadFields"], "content-type": "application/javascript"}  # type: ignore[dict-item]
        if gzipped:
            fields["content-encoding"] = "gzip"
        up = httpx.post(
            str(pending["codeUploadUrl"]), data=fields, files={"file": ("flow.js", data)}
        )
        assert up.status_code == 204, up.text
        done = httpx.put(
            f"{server.url}/machines/flow/v/{pending['machineVersionId']}",
            json={"clientInfo": f"gzip={gzipped}", "makeCurrent": True},
            headers=me,
        )
        assert done.status_code == 200, done.text
        assert done.json()["machineVersionId"].startswith("ver_")
    versions = httpx.get(f"{server.url}/machines/flow/v", headers=me).json()["versions"]
    assert [v["clientInfo"] for v in versions] == ["gzip=False", "gzip=True"]
    created = httpx.post(f"{server.url}/machines/flow", json={"slug": "x"}, headers=me)
    assert created.status_code == 200 and created.json()["state"] == "on"


def test_upload_flow_errors(server: Server) -> None:
    me = server.headers({"sid": "x"})
    httpx.post(f"{server.url}/machines", json={"slug": "flow"}, headers=me)
    pending = _provision(server, me)
    finalize = f"{server.url}/machines/flow/v/{pending['machineVersionId']}"
    r = httpx.put(finalize, json={}, headers=me)
    assert (r.status_code, r.json()["code"]) == (400, "invalid-parameter")  # nothing uploaded yet
    bad = httpx.post(str(pending["codeUploadUrl"]), files={"file": ("flow.js", b"machine = (\n")})
    assert bad.status_code == 204
    r = httpx.put(finalize, json={}, headers=me)
    assert (r.status_code, r.json()["code"]) == (400, "syntax-error")
    r = httpx.put(finalize, json={}, headers=me)
    assert r.status_code == 404  # a signed id is used once
    r = httpx.post(f"{server.url}/uploads/upl_nope", files={"file": ("f.js", b"x")})
    assert (r.status_code, r.json()["code"]) == (404, "upload-not-found")
    other = _provision(server, me)
    no_file = httpx.post(str(other["codeUploadUrl"]), data={"key": "k"})
    assert (no_file.status_code, no_file.json()["code"]) == (400, "invalid-parameter")
    assert httpx.post(f"{server.url}/machines/missing/v", json={}, headers=me).status_code == 404


def test_serve_deploy_creates_the_machine_with_the_indexes_its_file_selects(
    tmp_path: Path,
) -> None:
    server = Server(tmp_path, deploy=ROOT / "examples" / "research_agent.py")
    try:
        admin = server.headers({"sub": "admin"})
        machine = httpx.get(f"{server.url}/machines/research-agent", headers=admin)
        assert machine.status_code == 200, machine.text
        assert machine.json()["machine"]["indexes"] == ["status"]
        found = httpx.get(
            f"{server.url}/machines/research-agent/indexes/status/query",
            params={"op": "eq", "value": "planning"},
            headers=admin,
        )
        assert found.status_code == 200, found.text
    finally:
        server.stop()
