"""The control plane: orgs, keys, machines and machine versions (with their source).

It lives in the same SQLite file as the runtime's data but in its own tables with its
own schema version, so each side migrates on its own.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._protocol import StoreError

CONTROL_MIGRATIONS = [
    """
    CREATE TABLE orgs (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL);
    CREATE TABLE keys (
        id TEXT PRIMARY KEY, org_id TEXT NOT NULL, name TEXT NOT NULL, scopes TEXT NOT NULL,
        secret TEXT NOT NULL, created_at INTEGER NOT NULL
    );
    CREATE TABLE machines (
        org_id TEXT NOT NULL, slug TEXT NOT NULL, indexes TEXT NOT NULL, created_at INTEGER NOT NULL,
        current_version TEXT, PRIMARY KEY (org_id, slug)
    );
    CREATE TABLE versions (
        id TEXT PRIMARY KEY, org_id TEXT NOT NULL, machine TEXT NOT NULL, client_info TEXT,
        source TEXT NOT NULL, index_selectors TEXT NOT NULL, created_at INTEGER NOT NULL
    );
    CREATE INDEX versions_machine ON versions (org_id, machine, created_at);
    """,
]


@dataclass(frozen=True, slots=True)
class OrgRow:
    id: str
    name: str
    created_at: int


@dataclass(frozen=True, slots=True)
class KeyRow:
    id: str
    org_id: str
    name: str
    scopes: tuple[str, ...]
    secret: str
    created_at: int


@dataclass(frozen=True, slots=True)
class MachineRow:
    org_id: str
    slug: str
    indexes: tuple[str, ...]
    created_at: int
    current_version: str | None


@dataclass(frozen=True, slots=True)
class VersionRow:
    id: str
    org_id: str
    machine: str
    client_info: str | None
    source: str
    index_selectors: dict[str, str]
    created_at: int


class ControlStore:
    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc

    def _migrate(self) -> None:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS control_schema_version (version INTEGER NOT NULL)"
                )
                row = db.execute("SELECT version FROM control_schema_version").fetchone()
                current = row[0] if row else 0
                if current > len(CONTROL_MIGRATIONS):
                    raise StoreError(f"control schema {current} is newer than this backstate")
                for version in range(current, len(CONTROL_MIGRATIONS)):
                    for statement in CONTROL_MIGRATIONS[version].split(";"):
                        if statement.strip():
                            db.execute(statement)
                db.execute("DELETE FROM control_schema_version")
                db.execute(
                    "INSERT INTO control_schema_version VALUES (?)", (len(CONTROL_MIGRATIONS),)
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(str(exc)) from exc

    # -- orgs and keys ----------------------------------------------------------------------

    def add_org(self, org: OrgRow) -> None:
        self._run("INSERT INTO orgs VALUES (?, ?, ?)", (org.id, org.name, org.created_at))

    def orgs(self) -> list[OrgRow]:
        return [
            OrgRow(*r)
            for r in self._run("SELECT id, name, created_at FROM orgs ORDER BY created_at")
        ]

    def add_key(self, key: KeyRow) -> None:
        self._run(
            "INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?)",
            (
                key.id,
                key.org_id,
                key.name,
                json.dumps(list(key.scopes)),
                key.secret,
                key.created_at,
            ),
        )

    def key(self, key_id: str) -> KeyRow | None:
        rows = self._run(
            "SELECT id, org_id, name, scopes, secret, created_at FROM keys WHERE id = ?", (key_id,)
        )
        return _key(rows[0]) if rows else None

    def keys(self, org_id: str) -> list[KeyRow]:
        rows = self._run(
            "SELECT id, org_id, name, scopes, secret, created_at FROM keys WHERE org_id = ? ORDER BY created_at",
            (org_id,),
        )
        return [_key(r) for r in rows]

    def delete_key(self, org_id: str, key_id: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM keys WHERE org_id = ? AND id = ?", (org_id, key_id))
            return cur.rowcount == 1

    # -- machines and versions ----------------------------------------------------------------

    def add_machine(self, row: MachineRow) -> bool:
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO machines VALUES (?, ?, ?, ?, ?)",
                (
                    row.org_id,
                    row.slug,
                    json.dumps(list(row.indexes)),
                    row.created_at,
                    row.current_version,
                ),
            )
            return cur.rowcount == 1

    def machine(self, org_id: str, slug: str) -> MachineRow | None:
        rows = self._run(
            "SELECT org_id, slug, indexes, created_at, current_version FROM machines WHERE org_id = ? AND slug = ?",
            (org_id, slug),
        )
        return _machine(rows[0]) if rows else None

    def machines(self, org_id: str | None = None) -> list[MachineRow]:
        sql = "SELECT org_id, slug, indexes, created_at, current_version FROM machines"
        rows = (
            self._run(sql + " WHERE org_id = ? ORDER BY slug", (org_id,))
            if org_id
            else self._run(sql)
        )
        return [_machine(r) for r in rows]

    def add_version(self, row: VersionRow, make_current: bool) -> None:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        row.id,
                        row.org_id,
                        row.machine,
                        row.client_info,
                        row.source,
                        json.dumps(row.index_selectors),
                        row.created_at,
                    ),
                )
                if make_current:
                    db.execute(
                        "UPDATE machines SET current_version = ? WHERE org_id = ? AND slug = ?",
                        (row.id, row.org_id, row.machine),
                    )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def versions(self, org_id: str | None = None, machine: str | None = None) -> list[VersionRow]:
        sql = "SELECT id, org_id, machine, client_info, source, index_selectors, created_at FROM versions"
        if org_id is not None and machine is not None:
            rows = self._run(
                sql + " WHERE org_id = ? AND machine = ? ORDER BY created_at", (org_id, machine)
            )
        else:
            rows = self._run(sql + " ORDER BY created_at")
        return [VersionRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _key(r: Any) -> KeyRow:
    return KeyRow(r[0], r[1], r[2], tuple(json.loads(r[3])), r[4], r[5])


def _machine(r: Any) -> MachineRow:
    return MachineRow(r[0], r[1], tuple(json.loads(r[2])), r[3], r[4])
