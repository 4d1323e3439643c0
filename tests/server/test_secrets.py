"""Per-org secrets against a real sandboxed `backstate serve`: set from the CLI's stdin
and over HTTP, readable by that org's services only: not by guards, not by another
org, never in the API's answers, the server's output or the store file."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import httpx

from backstate.auth import sign_token

from .test_e2e import Server

VAULT = Path(__file__).parent / "machines" / "vault.py"
VALUE = "sk-test-Zq8vL1yP0wR4"


def _use(server: Server, headers: dict[str, str], name: str) -> dict[str, object]:
    base = f"{server.url}/machines/vault"
    assert httpx.post(base, json={"slug": name}, headers=headers).is_success
    sent = httpx.post(f"{base}/i/{name}/events", json={"event": "use"}, headers=headers)
    assert sent.status_code == 200, sent.text
    return dict(sent.json()["publicContext"])


def test_secrets_reach_only_their_orgs_services(tmp_path: Path) -> None:
    server = Server(tmp_path, deploy=VAULT)
    try:
        me = server.headers({"sub": "admin"})
        cli = [str(Path(sys.executable).parent / "backstate")]
        home = {**os.environ, "BACKSTATE_HOME": str(server.creds_path.parent)}
        done = subprocess.run(
            [*cli, "secrets", "set", "API_KEY"],
            input=VALUE + "\n",
            text=True,
            capture_output=True,
            env=home,
        )
        assert done.returncode == 0, done.stderr
        assert VALUE not in done.stdout + done.stderr
        listed = subprocess.run([*cli, "secrets", "list"], text=True, capture_output=True, env=home)
        assert "API_KEY" in listed.stdout and VALUE not in listed.stdout

        # The service reads it (the digest proves it, without the value leaving).
        assert _use(server, me, "a") == {"digest": hashlib.sha256(VALUE.encode()).hexdigest()}
        # A guard cannot: transition code never has secrets.
        peek = httpx.post(
            f"{server.url}/machines/vault/i/a/events", json={"event": "peek"}, headers=me
        )
        assert (peek.status_code, peek.json()["code"]) == (400, "event-rejected")

        # The API never answers with a value, and needs its own scope.
        got = httpx.get(f"{server.url}/secrets", headers=me)
        assert got.json()["secrets"][0]["name"] == "API_KEY" and VALUE not in got.text
        created = httpx.post(
            f"{server.url}/keys", json={"name": "prod", "use": "production"}, headers=me
        )
        assert created.status_code == 200, created.text
        prod = created.json()
        token = sign_token(prod["id"], prod["key"], {"sub": "p"}, expires_in_s=600)
        refused = httpx.get(f"{server.url}/secrets", headers={"authorization": f"Bearer {token}"})
        assert (refused.status_code, refused.json()["code"]) == (403, "missing-scope")
        bad = httpx.put(f"{server.url}/secrets/API_KEY", json={"value": 5}, headers=me)
        assert (bad.status_code, bad.json()["code"]) == (400, "invalid-parameter")

        # Another org's services see none of the first org's secrets.
        org = httpx.post(f"{server.url}/orgs", json={"name": "other"}, headers=me).json()
        key = org["adminKey"]
        other = {
            "authorization": "Bearer "
            + sign_token(key["id"], key["key"], {"sub": "o"}, expires_in_s=600)
        }
        assert (
            httpx.post(f"{server.url}/machines", json={"slug": "vault"}, headers=other).status_code
            == 201
        )
        version = httpx.post(
            f"{server.url}/machines/vault/v", json={"code": VAULT.read_text()}, headers=other
        )
        assert version.status_code == 200, version.text
        assert "no secret 'API_KEY'" in str(_use(server, other, "b")["error"])

        deleted = httpx.delete(f"{server.url}/secrets/API_KEY", headers=me)
        assert deleted.status_code == 204
        assert httpx.delete(f"{server.url}/secrets/API_KEY", headers=me).status_code == 404
    finally:
        server.stop()
    # Sealed at rest: the value is in no file of the store, nor the server's output.
    for path in [p for p in tmp_path.glob("b.db*") if p.is_file()]:
        assert VALUE.encode() not in path.read_bytes(), path
    assert VALUE not in "".join(server.output)
    assert (tmp_path / "secrets.key").stat().st_mode & 0o077 == 0
