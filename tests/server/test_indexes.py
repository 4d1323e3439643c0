"""Indexes added to an existing machine over HTTP, against a real sandboxed `backstate
serve` on SQLite and on PostgreSQL: the backfill's progress is visible, it survives a
SIGKILL of the server mid-way and finishes after a restart without doing any batch
twice, and bad requests get stable codes and change nothing."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

from tests.store import postgres

from .test_e2e import Server

SLOW = ("--backfill-batch", "3", "--backfill-pause", "0.3")


def _create(server: Server, names: list[str]) -> None:
    for n, name in enumerate(names):
        created = httpx.post(
            f"{server.url}/machines/toggler",
            json={"slug": name, "context": {"public": {"toggleCount": n}}},
            headers=server.headers({"sid": name}),
        )
        assert created.status_code == 200, created.text


def _progress(server: Server, admin: dict[str, str]) -> dict[str, Any]:
    got = httpx.get(f"{server.url}/machines/toggler/indexes/count", headers=admin)
    assert got.status_code == 200, got.text
    index: dict[str, Any] = got.json()["index"]
    return index


def _settled(server: Server, admin: dict[str, str], deadline: float) -> dict[str, Any]:
    """The index's progress once it is no longer backfilling (by ``deadline``)."""
    while (progress := _progress(server, admin))["state"] == "backfilling":
        assert time.monotonic() < deadline, progress
        time.sleep(0.05)
    return progress


def _query(server: Server, admin: dict[str, str]) -> httpx.Response:
    return httpx.get(
        f"{server.url}/machines/toggler/indexes/count/query",
        params={"limit": "1000"},
        headers=admin,
    )


def test_a_backfill_shows_progress_and_survives_a_sigkill(
    tmp_path: Path, store_url: str | None
) -> None:
    names = [f"t{n:02}" for n in range(30)]
    server = Server(tmp_path, store=store_url, options=SLOW)
    try:
        admin = server.headers({"sub": "admin"})
        _create(server, names)
        added = httpx.post(
            f"{server.url}/machines/toggler/indexes",
            json={"name": "count", "selector": "$.public.toggleCount"},
            headers=admin,
        )
        assert added.status_code == 201, added.text
        index = added.json()["index"]
        assert (index["state"], index["done"], index["total"]) == ("backfilling", 0, 30)
        assert index["selector"] == "$.public.toggleCount"
        refused = _query(server, admin)
        assert (refused.status_code, refused.json()["code"]) == (409, "index-not-ready")
        machine = httpx.get(f"{server.url}/machines/toggler", headers=admin).json()
        assert "count" in machine["machine"]["indexes"]
        # A transition racing the backfill: t29 (not walked yet) is turned off once.
        toggled = httpx.post(
            f"{server.url}/machines/toggler/i/t29/events",
            json={"event": "toggle"},
            headers=server.headers({"sid": "t29"}),
        )
        assert toggled.status_code == 200, toggled.text
        deadline = time.monotonic() + 30
        while (progress := _progress(server, admin))["done"] < 6:
            assert time.monotonic() < deadline, progress
            time.sleep(0.05)
        server.kill()
    finally:
        server.stop()
    assert progress["state"] == "backfilling" and progress["done"] < 30, progress

    server = Server(tmp_path, store=store_url, options=SLOW)
    try:
        admin = server.headers({"sub": "admin"})
        # The killed server's lease runs out first.
        progress = _settled(server, admin, time.monotonic() + 60)
        # Every batch counted once: a batch redone would count its instances again.
        assert (progress["state"], progress["done"], progress["total"]) == ("ready", 30, 30)
        found = _query(server, admin)
        assert found.status_code == 200, found.text
        hits = [(i["slug"], i["indexValue"]) for i in found.json()["instances"]]
        expected = {name: n for n, name in enumerate(names)}
        expected["t29"] = 30  # turned off during the backfill
        assert len(hits) == 30 and dict(hits) == expected
        listed = httpx.get(f"{server.url}/machines/toggler/indexes", headers=admin).json()
        assert [i["name"] for i in listed["indexes"]] == ["count"]
    finally:
        server.stop()


def test_bad_requests_get_stable_codes_and_change_nothing(tmp_path: Path) -> None:
    server = Server(tmp_path)
    try:
        admin = server.headers({"sub": "admin"})
        created = httpx.post(
            f"{server.url}/machines", json={"slug": "declared", "indexes": ["own"]}, headers=admin
        )
        assert created.status_code == 201, created.text
        cases = [
            ("toggler", {"name": "bad name", "selector": "$.a"}, 400, "invalid-parameter"),
            ("toggler", {"name": "ok", "selector": "$["}, 400, "invalid-index-selector"),
            ("toggler", {"name": "ok"}, 400, "invalid-parameter"),
            ("nobody", {"name": "ok", "selector": "$.a"}, 404, "machine-not-found"),
            ("declared", {"name": "own", "selector": "$.a"}, 409, "index-exists"),
        ]
        for machine, body, status, code in cases:
            answer = httpx.post(
                f"{server.url}/machines/{machine}/indexes", json=body, headers=admin
            )
            assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
        for machine in ("toggler", "declared"):
            listed = httpx.get(f"{server.url}/machines/{machine}/indexes", headers=admin)
            assert listed.status_code == 200
            assert [i["name"] for i in listed.json()["indexes"]] == (
                [] if machine == "toggler" else ["own"]
            )
        first = httpx.post(
            f"{server.url}/machines/toggler/indexes",
            json={"name": "where", "selector": "@state"},
            headers=admin,
        )
        assert first.status_code == 201, first.text
        again = httpx.post(
            f"{server.url}/machines/toggler/indexes",
            json={"name": "where", "selector": "$.other"},
            headers=admin,
        )
        assert (again.status_code, again.json()["code"]) == (409, "index-exists")
        missing = httpx.get(f"{server.url}/machines/toggler/indexes/nope", headers=admin)
        assert (missing.status_code, missing.json()["code"]) == (404, "index-not-found")
        where = httpx.get(f"{server.url}/machines/toggler/indexes/where", headers=admin).json()
        assert where["index"]["selector"] == "@state"
    finally:
        server.stop()


def _sql(tmp_path: Path, store_url: str | None, query: str, *args: Any) -> list[Any]:
    """One statement on the server's store, from outside it (``?`` placeholders)."""
    if store_url is not None:
        return postgres.rows(store_url, query, *args)
    with sqlite3.connect(tmp_path / "b.db") as conn:
        return conn.execute(query, args).fetchall()


def test_a_failed_backfill_is_retried_by_the_same_add_once_mended(
    tmp_path: Path, store_url: str | None
) -> None:
    names = [f"t{n}" for n in range(6)]
    server = Server(tmp_path, store=store_url)
    try:
        admin = server.headers({"sub": "admin"})
        _create(server, names)
        ((good,),) = _sql(tmp_path, store_url, "SELECT snapshot FROM instances WHERE name = 't3'")
        _sql(tmp_path, store_url, "UPDATE instances SET snapshot = '{oops' WHERE name = 't3'")
        add = {"name": "count", "selector": "$.public.toggleCount"}
        url = f"{server.url}/machines/toggler/indexes"
        assert httpx.post(url, json=add, headers=admin).status_code == 201
        deadline = time.monotonic() + 30
        progress = _settled(server, admin, deadline)
        assert progress["state"] == "failed" and "'t3'" in progress["error"], progress
        refused = _query(server, admin)
        assert (refused.status_code, refused.json()["code"]) == (409, "index-not-ready")
        assert "could not be backfilled" in refused.json()["error"]
        other = httpx.post(url, json={**add, "selector": "$.other"}, headers=admin)
        assert (other.status_code, other.json()["code"]) == (409, "index-exists")
        _sql(tmp_path, store_url, "UPDATE instances SET snapshot = ? WHERE name = 't3'", good)
        retried = httpx.post(url, json=add, headers=admin)
        assert retried.status_code == 201, retried.text
        assert (retried.json()["index"]["state"], retried.json()["index"]["error"]) == (
            "backfilling",
            None,
        )
        progress = _settled(server, admin, deadline)
        assert (progress["state"], progress["done"], progress["total"]) == ("ready", 6, 6)
        found = _query(server, admin)
        assert found.status_code == 200, found.text
        hits = sorted((i["slug"], i["indexValue"]) for i in found.json()["instances"])
        assert hits == [(name, n) for n, name in enumerate(names)]
    finally:
        server.stop()
