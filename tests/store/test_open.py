"""Choosing a store from a path or URL, and serving from either store."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from backstate.server import Backend
from backstate.store import PostgresStore, SQLiteStore, open_store

from .postgres import fresh_schema, rows
from .targets import Target

ROOT = Path(__file__).resolve().parents[2]


def test_paths_and_sqlite_urls_open_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for url, file in (
        (tmp_path / "p.db", tmp_path / "p.db"),
        (str(tmp_path / "s.db"), tmp_path / "s.db"),
        (f"sqlite:///{tmp_path / 'u.db'}", tmp_path / "u.db"),  # sqlite:////absolute
        ("sqlite:///relative.db", tmp_path / "relative.db"),
    ):
        store = open_store(url)
        assert isinstance(store, SQLiteStore)
        store.close()
        assert file.exists(), url


def test_unknown_schemes_are_refused() -> None:
    for url in ("mysql://x/y", "sqlite://", "sqlite:///"):
        with pytest.raises(ValueError, match="unsupported store URL"):
            open_store(url)


def test_postgresql_urls_open_postgresql(postgres_database: str) -> None:
    for scheme in ("postgresql", "postgres"):
        store = open_store(postgres_database.replace("postgresql", scheme, 1))
        assert isinstance(store, PostgresStore)
        store.close()


def test_the_backend_runs_on_either_store(target: Target) -> None:
    async def body() -> None:
        backend = Backend(target.url)
        created = backend.ensure_admin()
        assert created is not None
        await backend.deploy_file(created.org_id, ROOT / "examples" / "toggler.py")
        await backend.start()
        try:
            name = f"{created.org_id}.toggler"
            await backend.runtime.create(name, "t")
            state = await backend.runtime.send(name, "t", {"type": "toggle"})
            assert state.seq == 1
        finally:
            await backend.close()
        again = Backend(target.url)
        assert again.ensure_admin() is None  # the org, keys and versions persisted
        await again.start()
        try:
            assert (await again.runtime.get(f"{created.org_id}.toggler", "t")).seq == 1
        finally:
            await again.close()

    asyncio.run(body())


def test_serve_takes_a_store_url(postgres_database: str, tmp_path: Path) -> None:
    url = fresh_schema(postgres_database)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    creds = tmp_path / "credentials.json"
    command = [str(Path(sys.executable).parent / "backstate"), "serve", "--store", url]
    command += ["--port", str(port), "--credentials", str(creds)]
    command += ["--deploy", str(ROOT / "examples" / "toggler.py")]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,  # where --db's default would create its file
        env={**os.environ, "BACKSTATE_HOME": str(tmp_path)},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/machines", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        org_id = json.loads(creds.read_text())["orgId"]
        assert rows(url, "SELECT org_id, slug FROM machines") == [(org_id, "toggler")]
        assert not (tmp_path / "backstate.db").exists()
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert "backstate API on" in output, output
