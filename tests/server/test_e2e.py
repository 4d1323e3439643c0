"""End to end: a real `backstate serve` process on a free port, over real HTTP and
WebSocket, driven the way State Backed's quick start drives its API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
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
import jwt
import pytest
import websockets

from backstate.auth import sign_token
from backstate.store import LogRow, SQLiteStore, WriteBatch

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TOGGLER = ROOT / "examples" / "toggler.py"


class Server:
    """A `backstate serve` process on a free port: on a SQLite file in ``tmp`` unless a
    ``store`` URL is given, with ``deploy`` deployed (the toggler by default)."""

    def __init__(
        self,
        tmp: Path,
        *,
        store: str | None = None,
        deploy: Path | None = TOGGLER,
        start_timeout: float = 20.0,
        options: tuple[str, ...] = (),
    ) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.creds_path = tmp / "credentials.json"
        args = [str(Path(sys.executable).parent / "backstate"), "serve"]
        args += ["--store", store] if store is not None else ["--db", str(tmp / "b.db")]
        args += ["--port", str(self.port), "--credentials", str(self.creds_path)]
        if deploy is not None:
            args += ["--deploy", str(deploy)]
        args += options
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        # Drain the server's output so a chatty server never blocks on a full pipe.
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                httpx.get(self.url + "/machines", timeout=1)
                break
            except httpx.TransportError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    self.stop()
                    raise RuntimeError(f"server did not start: {''.join(self.output)}") from None
                time.sleep(0.1)
        self.creds = json.loads(self.creds_path.read_text())

    def token(self, claims: dict[str, Any], **kw: Any) -> str:
        return sign_token(
            self.creds["keyId"], self.creds["secret"], claims, expires_in_s=kw.pop("ttl", 600), **kw
        )

    def deploy(self, slug: str, example: str | Path) -> str:
        """Create machine ``slug`` with ``examples/<example>`` (or the file at an absolute
        path) as its current version; the machine's base URL."""
        admin = self.headers({"sub": "admin"})
        created = httpx.post(f"{self.url}/machines", json={"slug": slug}, headers=admin)
        assert created.status_code == 201, created.text
        source = (ROOT / "examples" / example).read_text()
        version = httpx.post(f"{self.url}/machines/{slug}/v", json={"code": source}, headers=admin)
        assert version.status_code == 200, version.text
        return f"{self.url}/machines/{slug}"

    def write_logs(self, machine: str, per_millisecond: list[int]) -> tuple[int, list[str]]:
        """Log rows of ``machine`` straight into the server's SQLite file (through the
        store's own writes): ``per_millisecond[k]`` entries in the k-th millisecond from
        a minute ago. The first millisecond, and the messages in order."""
        store = SQLiteStore(self.creds_path.parent / "b.db")
        start = int(time.time() * 1000) - 60_000
        rows, messages = [], []
        for offset, count in enumerate(per_millisecond):
            for _ in range(count):
                messages.append(f"{machine}-{len(messages)}")
                where = (f"{self.creds['orgId']}.{machine}", "v", "i")
                rows.append(LogRow(start + offset, *where, "info", messages[-1]))
        try:
            store.commit(WriteBatch(logs=rows))
        finally:
            store.close()
        return start, messages

    def headers(self, claims: dict[str, Any]) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(claims)}"}

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


def test_toggler_quick_start_over_http_and_realtime(server: Server) -> None:
    me = server.headers({"sid": "session-123"})
    r = httpx.post(f"{server.url}/machines/toggler", json={"slug": "session-123"}, headers=me)
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["publicContext"], r.json()["done"]) == (
        "on",
        {"toggleCount": 0},
        False,
    )

    async def realtime() -> list[Any]:
        uri = f"ws://127.0.0.1:{server.port}/rt?token={server.token({'sid': 'session-123'})}"
        async with websockets.connect(uri) as ws:
            await ws.send(
                json.dumps(
                    {
                        "type": "subscribe-to-instance",
                        "requestId": "r1",
                        "machineName": "toggler",
                        "machineInstanceName": "session-123",
                    }
                )
            )
            first = json.loads(await asyncio.wait_for(ws.recv(), 5))
            async with httpx.AsyncClient() as client:
                sent = await client.post(
                    f"{server.url}/machines/toggler/i/session-123/events",
                    json={"event": "toggle"},
                    headers=me,
                )
            assert sent.status_code == 200, sent.text
            assert (sent.json()["state"], sent.json()["publicContext"]) == (
                "off",
                {"toggleCount": 1},
            )
            second = json.loads(await asyncio.wait_for(ws.recv(), 5))
            return [first, second]

    first, second = asyncio.run(realtime())
    assert first["type"] == "instance-update" and first["state"] == "on"
    assert (second["state"], second["publicContext"], second["machineName"]) == (
        "off",
        {"toggleCount": 1},
        "toggler",
    )
    got = httpx.get(f"{server.url}/machines/toggler/i/session-123", headers=me).json()
    assert (got["state"], got["publicContext"]) == ("off", {"toggleCount": 1})
    admin = httpx.get(f"{server.url}/machines/toggler/i/session-123/admin", headers=me).json()
    assert admin["context"] == {"public": {"toggleCount": 1}} and admin["status"] == "running"
    events = httpx.get(f"{server.url}/machines/toggler/i/session-123/events", headers=me).json()[
        "transitions"
    ]
    assert [t["event"]["type"] for t in events] == ["xstate.init", "toggle"]


def test_authorizers_and_bad_input_get_clear_errors(server: Server) -> None:
    me = server.headers({"sid": "s1"})
    assert (
        httpx.post(f"{server.url}/machines/toggler", json={"slug": "s1"}, headers=me).status_code
        == 200
    )

    def error(response: httpx.Response) -> tuple[int, str]:
        return response.status_code, response.json()["code"]

    other = server.headers({"sid": "mallory"})
    assert error(httpx.get(f"{server.url}/machines/toggler/i/s1", headers=other)) == (
        403,
        "rejected-by-machine-authorizer",
    )
    assert error(
        httpx.post(
            f"{server.url}/machines/toggler/i/s1/events", json={"event": "toggle"}, headers=other
        )
    ) == (
        403,
        "rejected-by-machine-authorizer",
    )
    assert httpx.get(f"{server.url}/machines/toggler/i/s1").status_code == 401
    unsigned = jwt.encode(
        {"act": {"sid": "s1"}}, key="", algorithm="none", headers={"kid": server.creds["keyId"]}
    )
    assert (
        httpx.get(
            f"{server.url}/machines/toggler/i/s1", headers={"authorization": f"Bearer {unsigned}"}
        ).status_code
        == 401
    )
    expired = server.token({"sid": "s1"}, ttl=-60)
    assert (
        httpx.get(
            f"{server.url}/machines/toggler/i/s1", headers={"authorization": f"Bearer {expired}"}
        ).status_code
        == 401
    )
    assert error(
        httpx.post(f"{server.url}/machines/toggler/i/s1/events", content=b"{nope", headers=me)
    ) == (400, "invalid-json")
    assert error(
        httpx.post(f"{server.url}/machines/toggler/i/s1/events", json={"event": 5}, headers=me)
    ) == (400, "invalid-event")
    assert error(
        httpx.post(f"{server.url}/machines/toggler", json={"slug": "bad name"}, headers=me)
    ) == (400, "invalid-parameter")
    assert error(httpx.post(f"{server.url}/machines/toggler", json={"slug": "s1"}, headers=me)) == (
        409,
        "invalid-state",
    )
    assert httpx.get(f"{server.url}/machines/nope/i/s1", headers=me).status_code == 404
    assert httpx.get(f"{server.url}/machines/toggler/i/nope", headers=me).status_code == 404
    big = {"event": {"type": "toggle", "pad": "x" * 1_100_000}}
    assert error(
        httpx.post(f"{server.url}/machines/toggler/i/s1/events", json=big, headers=me)
    ) == (413, "payload-too-large")
    state = httpx.get(f"{server.url}/machines/toggler/i/s1", headers=me).json()
    assert state["state"] == "on"  # none of the above changed anything


def test_the_body_limit_is_configured_and_oversize_bodies_are_never_read_whole(
    tmp_path: Path,
) -> None:
    server = Server(tmp_path, options=("--max-body-bytes", "2048"))
    try:
        me = server.headers({"sid": "s1"})
        events = f"{server.url}/machines/toggler/i/s1/events"
        assert httpx.post(f"{server.url}/machines/toggler", json={"slug": "s1"}, headers=me)
        fits = {"event": {"type": "toggle", "pad": "x" * 1900}}
        assert httpx.post(events, json=fits, headers=me).status_code == 200
        over = {"event": {"type": "toggle", "pad": "x" * 2100}}
        r = httpx.post(events, json=over, headers=me)
        assert (r.status_code, r.json()["code"]) == (413, "payload-too-large")
        assert "2048 bytes" in r.json()["error"]

        # No Content-Length (chunked): refused while it streams in, not after 200 MB.
        def stream() -> Iterator[bytes]:
            yield b'{"event": {"type": "toggle", "pad": "'
            for _ in range(200):
                yield b"x" * 1_000_000

        rss = _rss_kib(server.process.pid)
        with contextlib.suppress(httpx.TransportError):  # it may stop reading early
            r = httpx.post(events, content=stream(), headers=me, timeout=30)
            assert (r.status_code, r.json()["code"]) == (413, "payload-too-large")
        assert _rss_kib(server.process.pid) - rss < 50_000
        form = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "x": "y" * 3000}
        r = httpx.post(f"{server.url}/tokens", data=form)
        assert (r.status_code, r.json()["code"]) == (400, "malformed-form")
        state = httpx.get(f"{server.url}/machines/toggler/i/s1", headers=me).json()
        assert state["state"] == "off"  # toggled once: only the event that fitted was taken
    finally:
        server.stop()
    with pytest.raises(subprocess.CalledProcessError) as refused:
        subprocess.run(
            [str(Path(sys.executable).parent / "backstate"), "serve", "--max-body-bytes", "0"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
    assert refused.value.returncode == 2
    assert "not a positive whole number: '0'" in refused.value.stderr


def test_health_and_readiness_need_no_token(server: Server) -> None:
    # The outage side of /readyz is in tests/cluster/test_postgres_restart.py.
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    assert paths["/readyz"]["get"]["security"] == [] == paths["/healthz"]["get"]["security"]


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))  # type: ignore[union-attr]


def test_versions_upload_python_source_with_clear_errors(server: Server) -> None:
    me = server.headers({"sid": "x"})
    assert (
        httpx.post(f"{server.url}/machines", json={"slug": "fresh"}, headers=me).status_code == 201
    )
    r = httpx.post(f"{server.url}/machines/fresh/v", json={"code": "machine = (\n"}, headers=me)
    assert (r.status_code, r.json()["code"]) == (400, "syntax-error")
    source = (ROOT / "examples" / "toggler.py").read_text()
    r = httpx.post(
        f"{server.url}/machines/fresh/v", json={"code": source, "clientInfo": "1.0.0"}, headers=me
    )
    assert r.status_code == 200 and r.json()["machineVersionId"].startswith("ver_")
    created = httpx.post(f"{server.url}/machines/fresh", json={"slug": "x"}, headers=me)
    assert created.status_code == 200 and created.json()["state"] == "on"
    versions = httpx.get(f"{server.url}/machines/fresh/v", headers=me).json()["versions"]
    assert [v["clientInfo"] for v in versions] == ["1.0.0"]


def test_a_non_ascii_deletion_proof_is_refused_not_a_500(server: Server) -> None:
    # hmac.compare_digest raises on non-ASCII str; schemathesis found the 500.
    me = server.headers({"sid": "s1"})
    assert httpx.post(f"{server.url}/machines/toggler", json={"slug": "s1"}, headers=me).is_success
    admin = server.headers({"sub": "admin"})
    for proof, code in (("ü", "invalid-parameter"), ("\ud85c", "invalid-unicode")):
        body = json.dumps(
            {
                "dangerDataWillBeDeletedForever": True,
                "hmacSha256OfMachineInstanceNameWithMachineNameKey": proof,
            }
        )
        r = httpx.request(
            "DELETE",
            f"{server.url}/machines/toggler/i/s1",
            content=body,
            headers={**admin, "content-type": "application/json"},
        )
        assert (r.status_code, r.json()["code"]) == (400, code)
    assert httpx.get(f"{server.url}/machines/toggler/i/s1", headers=me).status_code == 200
