"""The control plane: orgs, keys, identity providers, token providers, machines and
machine versions (with their source).

It lives in the same database as the runtime's data (a SQLite file or PostgreSQL) but
in its own tables with its own schema version, so each side migrates on its own. The
queries are shared (``_database``); the DDL is per dialect, so a new migration is
written twice, side by side.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._database import Database, SQLiteDatabase, Statement

# Advisory lock key of start-up deployments: "deploys!" as a big-endian int64.
DEPLOY_LOCK = int.from_bytes(b"deploys!", "big", signed=True)

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
    # Identity providers are keyed by (org, aud, iss), '' standing for an absent aud or
    # iss (NULLs would be distinct in the key); token providers by (org, service).
    """
    CREATE TABLE idps (
        org_id TEXT NOT NULL, aud TEXT NOT NULL, iss TEXT NOT NULL, algs TEXT NOT NULL,
        key TEXT, jwks_url TEXT, mapping TEXT NOT NULL, created_at INTEGER NOT NULL,
        PRIMARY KEY (org_id, aud, iss)
    );
    CREATE TABLE token_providers (
        org_id TEXT NOT NULL, service TEXT NOT NULL, key_id TEXT NOT NULL,
        mapping TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (org_id, service)
    );
    """,  # Migrations between two versions of a machine (their Python source).
    """
    CREATE TABLE migrations (
        id TEXT PRIMARY KEY, org_id TEXT NOT NULL, machine TEXT NOT NULL,
        from_version TEXT NOT NULL, to_version TEXT NOT NULL, source TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX migrations_machine ON migrations (org_id, machine, created_at);
    """,
    # The first start's org, claimed by one row: two nodes starting together on a new
    # database create one org, not two.
    "CREATE TABLE bootstrap (id INTEGER PRIMARY KEY CHECK (id = 1), org_id TEXT NOT NULL)",
    # What loading a version's file described (its state tree...), so that a server
    # running machine code in sandboxed workers never imports it to know its shape.
    "ALTER TABLE versions ADD COLUMN definition TEXT",
    # Per-org secrets, sealed with the server's key (server/_secrets): never plaintext.
    """
    CREATE TABLE secrets (
        org_id TEXT NOT NULL, name TEXT NOT NULL, sealed TEXT NOT NULL,
        updated_at INTEGER NOT NULL, PRIMARY KEY (org_id, name)
    )
    """,
]

# The same schema in PostgreSQL: BIGINT for millisecond times (INTEGER is 32 bits), and
# byte-order collation on the columns the queries sort by, as SQLite sorts.
POSTGRES_CONTROL_MIGRATIONS = [
    """
    CREATE TABLE orgs (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at BIGINT NOT NULL);
    CREATE TABLE keys (
        id TEXT PRIMARY KEY, org_id TEXT NOT NULL, name TEXT NOT NULL, scopes TEXT NOT NULL,
        secret TEXT NOT NULL, created_at BIGINT NOT NULL
    );
    CREATE TABLE machines (
        org_id TEXT NOT NULL, slug TEXT COLLATE "C" NOT NULL, indexes TEXT NOT NULL,
        created_at BIGINT NOT NULL, current_version TEXT, PRIMARY KEY (org_id, slug)
    );
    CREATE TABLE versions (
        id TEXT PRIMARY KEY, org_id TEXT NOT NULL, machine TEXT NOT NULL, client_info TEXT,
        source TEXT NOT NULL, index_selectors TEXT NOT NULL, created_at BIGINT NOT NULL
    );
    CREATE INDEX versions_machine ON versions (org_id, machine, created_at);
    """,
    """
    CREATE TABLE idps (
        org_id TEXT NOT NULL, aud TEXT COLLATE "C" NOT NULL, iss TEXT COLLATE "C" NOT NULL,
        algs TEXT NOT NULL, key TEXT, jwks_url TEXT, mapping TEXT NOT NULL,
        created_at BIGINT NOT NULL, PRIMARY KEY (org_id, aud, iss)
    );
    CREATE TABLE token_providers (
        org_id TEXT NOT NULL, service TEXT COLLATE "C" NOT NULL, key_id TEXT NOT NULL,
        mapping TEXT NOT NULL, created_at BIGINT NOT NULL, PRIMARY KEY (org_id, service)
    );
    """,
    """
    CREATE TABLE migrations (
        id TEXT PRIMARY KEY, org_id TEXT NOT NULL, machine TEXT NOT NULL,
        from_version TEXT NOT NULL, to_version TEXT NOT NULL, source TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX migrations_machine ON migrations (org_id, machine, created_at);
    """,
    # The first start's org, claimed by one row: two nodes starting together on a new
    # database create one org, not two.
    "CREATE TABLE bootstrap (id INTEGER PRIMARY KEY CHECK (id = 1), org_id TEXT NOT NULL)",
    # What loading a version's file described (its state tree...), so that a server
    # running machine code in sandboxed workers never imports it to know its shape.
    "ALTER TABLE versions ADD COLUMN definition TEXT",
    # Per-org secrets, sealed with the server's key (server/_secrets): never plaintext.
    """
    CREATE TABLE secrets (
        org_id TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C" NOT NULL,
        sealed TEXT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (org_id, name)
    )
    """,
]


@dataclass(frozen=True, slots=True)
class SecretRow:
    org_id: str
    name: str
    sealed: str  # the value encrypted with the server's key (server/_secrets)
    updated_at: int


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
class IdpRow:
    """An identity provider; ``key`` (base64url) is secret, ``jwks_url`` its alternative."""

    org_id: str
    aud: str | None
    iss: str | None
    algs: tuple[str, ...]
    mapping: dict[str, Any]
    key: str | None = field(repr=False)
    jwks_url: str | None
    created_at: int


@dataclass(frozen=True, slots=True)
class TokenProviderRow:
    org_id: str
    service: str
    key_id: str
    mapping: dict[str, Any]
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
    definition: dict[str, Any] | None = None  # see backstate.sandbox.Loaded


@dataclass(frozen=True, slots=True)
class MigrationRow:
    id: str
    org_id: str
    machine: str
    from_version: str
    to_version: str
    source: str
    created_at: int


class ControlStore:
    """The control plane on a ``Database``: a SQLite file (given its path) or PostgreSQL
    (``PostgresDatabase``)."""

    def __init__(self, db: str | Path | Database) -> None:
        self._db = SQLiteDatabase(db) if isinstance(db, str | Path) else db
        migrations = {"sqlite": CONTROL_MIGRATIONS, "postgresql": POSTGRES_CONTROL_MIGRATIONS}
        try:
            self._db.migrate("control_schema_version", migrations[self._db.dialect])
        except BaseException:
            self._db.close()
            raise

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        return self._db.query(sql, args)

    # -- orgs and keys ----------------------------------------------------------------------

    def add_org(
        self,
        org: OrgRow,
        keys: Iterable[KeyRow] = (),
        idps: Iterable[IdpRow] = (),
        token_providers: Iterable[TokenProviderRow] = (),
        *,
        first: bool = False,
    ) -> None:
        """Create an org together with its first keys, IdPs and token providers, atomically.
        ``first``: only if no org was ever created this way (else ``StoreError``, nothing
        written): the first start's org."""
        claim: list[Statement] = (
            [("INSERT INTO bootstrap VALUES (1, ?)", (org.id,))] if first else []
        )
        self._db.execute(
            *claim,
            ("INSERT INTO orgs VALUES (?, ?, ?)", (org.id, org.name, org.created_at)),
            *((_INSERT_KEY, _key_args(key)) for key in keys),
            *((_UPSERT_IDP, _idp_args(idp)) for idp in idps),
            *((_UPSERT_TOKEN_PROVIDER, _token_provider_args(p)) for p in token_providers),
        )

    def org(self, org_id: str) -> OrgRow | None:
        rows = self._run("SELECT id, name, created_at FROM orgs WHERE id = ?", (org_id,))
        return OrgRow(*rows[0]) if rows else None

    def orgs(self) -> list[OrgRow]:
        return [
            OrgRow(*r)
            for r in self._run("SELECT id, name, created_at FROM orgs ORDER BY created_at")
        ]

    def add_key(self, key: KeyRow) -> None:
        self._db.execute((_INSERT_KEY, _key_args(key)))

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
        [count] = self._db.execute(
            ("DELETE FROM keys WHERE org_id = ? AND id = ?", (org_id, key_id))
        )
        return count == 1

    # -- secrets ------------------------------------------------------------------------------

    def put_secret(self, row: SecretRow) -> None:
        self._db.execute(
            (
                "INSERT INTO secrets VALUES (?, ?, ?, ?) ON CONFLICT (org_id, name)"
                " DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
                (row.org_id, row.name, row.sealed, row.updated_at),
            )
        )

    def secrets(self, org_id: str) -> list[SecretRow]:
        rows = self._run(
            "SELECT org_id, name, sealed, updated_at FROM secrets WHERE org_id = ? ORDER BY name",
            (org_id,),
        )
        return [SecretRow(*r) for r in rows]

    def delete_secret(self, org_id: str, name: str) -> bool:
        [count] = self._db.execute(
            ("DELETE FROM secrets WHERE org_id = ? AND name = ?", (org_id, name))
        )
        return count == 1

    # -- identity providers and token providers ----------------------------------------------

    def upsert_idp(self, row: IdpRow) -> None:
        """Add the IdP, or replace the one of this org with the same aud and iss."""
        self._db.execute((_UPSERT_IDP, _idp_args(row)))

    def idps(self, org_id: str) -> list[IdpRow]:
        rows = self._run(
            "SELECT org_id, aud, iss, algs, mapping, key, jwks_url, created_at FROM idps"
            " WHERE org_id = ? ORDER BY created_at, aud, iss",
            (org_id,),
        )
        return [
            IdpRow(
                r[0],
                r[1] or None,
                r[2] or None,
                tuple(json.loads(r[3])),
                json.loads(r[4]),
                r[5],
                r[6],
                r[7],
            )
            for r in rows
        ]

    def delete_idp(self, org_id: str, aud: str | None, iss: str | None) -> bool:
        [count] = self._db.execute(
            (
                "DELETE FROM idps WHERE org_id = ? AND aud = ? AND iss = ?",
                (org_id, aud or "", iss or ""),
            )
        )
        return count == 1

    def upsert_token_provider(self, row: TokenProviderRow) -> None:
        """Add the token provider, or replace the one of this org for the same service."""
        self._db.execute((_UPSERT_TOKEN_PROVIDER, _token_provider_args(row)))

    def token_providers(self, org_id: str) -> list[TokenProviderRow]:
        rows = self._run(
            "SELECT org_id, service, key_id, mapping, created_at FROM token_providers"
            " WHERE org_id = ? ORDER BY service",
            (org_id,),
        )
        return [_token_provider(r) for r in rows]

    def token_provider(self, org_id: str, service: str) -> TokenProviderRow | None:
        rows = self._run(
            "SELECT org_id, service, key_id, mapping, created_at FROM token_providers"
            " WHERE org_id = ? AND service = ?",
            (org_id, service),
        )
        return _token_provider(rows[0]) if rows else None

    def delete_token_provider(self, org_id: str, service: str) -> bool:
        [count] = self._db.execute(
            ("DELETE FROM token_providers WHERE org_id = ? AND service = ?", (org_id, service))
        )
        return count == 1

    # -- machines and versions ----------------------------------------------------------------

    def add_machine(self, row: MachineRow) -> bool:
        [count] = self._db.execute(
            (
                "INSERT INTO machines VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    row.org_id,
                    row.slug,
                    json.dumps(list(row.indexes)),
                    row.created_at,
                    row.current_version,
                ),
            )
        )
        return count == 1

    def deploying(self) -> AbstractContextManager[None]:
        """Start-up deployments (``serve --deploy``) one process at a time: nodes started
        together with the same files then make one version of each, not one per node."""
        return self._db.exclusive(DEPLOY_LOCK)

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

    def set_machine_indexes(self, org_id: str, slug: str, indexes: list[str]) -> None:
        self._db.execute(
            (
                "UPDATE machines SET indexes = ? WHERE org_id = ? AND slug = ?",
                (json.dumps(indexes), org_id, slug),
            )
        )

    def delete_machine(self, org_id: str, slug: str) -> None:
        """Remove a machine, its versions and migrations (the caller checks no instances
        remain)."""
        self._db.execute(
            ("DELETE FROM migrations WHERE org_id = ? AND machine = ?", (org_id, slug)),
            ("DELETE FROM versions WHERE org_id = ? AND machine = ?", (org_id, slug)),
            ("DELETE FROM machines WHERE org_id = ? AND slug = ?", (org_id, slug)),
        )

    def add_version(self, row: VersionRow, make_current: bool) -> None:
        statements: list[Statement] = [
            (
                "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.id,
                    row.org_id,
                    row.machine,
                    row.client_info,
                    row.source,
                    json.dumps(row.index_selectors),
                    row.created_at,
                    None if row.definition is None else json.dumps(row.definition),
                ),
            )
        ]
        if make_current:
            statements.append(
                (
                    "UPDATE machines SET current_version = ? WHERE org_id = ? AND slug = ?",
                    (row.id, row.org_id, row.machine),
                )
            )
        self._db.execute(*statements)

    def set_current_version(self, org_id: str, machine: str, version_id: str) -> None:
        self._db.execute(
            (
                "UPDATE machines SET current_version = ? WHERE org_id = ? AND slug = ?",
                (version_id, org_id, machine),
            )
        )

    def versions(self, org_id: str | None = None, machine: str | None = None) -> list[VersionRow]:
        sql = (
            "SELECT id, org_id, machine, client_info, source, index_selectors, created_at,"
            " definition FROM versions"
        )
        if org_id is not None and machine is not None:
            rows = self._run(
                sql + " WHERE org_id = ? AND machine = ? ORDER BY created_at", (org_id, machine)
            )
        else:
            rows = self._run(sql + " ORDER BY created_at")
        return [
            VersionRow(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                json.loads(r[5]),
                r[6],
                json.loads(r[7]) if r[7] else None,
            )
            for r in rows
        ]

    def describe_version(self, version_id: str, definition: dict[str, Any]) -> None:
        """Record what loading a version (created without it) described."""
        self._db.execute(
            (
                "UPDATE versions SET definition = ? WHERE id = ?",
                (json.dumps(definition), version_id),
            )
        )

    def deployment_ids(self) -> tuple[set[str], set[str]]:
        """Every version's id and every migration's id (without their sources)."""
        return (
            {r[0] for r in self._run("SELECT id FROM versions")},
            {r[0] for r in self._run("SELECT id FROM migrations")},
        )

    def add_migration(self, row: MigrationRow) -> None:
        self._db.execute(
            (
                "INSERT INTO migrations VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    row.id,
                    row.org_id,
                    row.machine,
                    row.from_version,
                    row.to_version,
                    row.source,
                    row.created_at,
                ),
            )
        )

    def delete_migration(self, org_id: str, machine: str, migration_id: str) -> None:
        self._db.execute(
            (
                "DELETE FROM migrations WHERE org_id = ? AND machine = ? AND id = ?",
                (org_id, machine, migration_id),
            )
        )

    def migrations(
        self, org_id: str | None = None, machine: str | None = None
    ) -> list[MigrationRow]:
        sql = "SELECT id, org_id, machine, from_version, to_version, source, created_at FROM migrations"
        if org_id is not None and machine is not None:
            rows = self._run(
                sql + " WHERE org_id = ? AND machine = ? ORDER BY created_at", (org_id, machine)
            )
        else:
            rows = self._run(sql + " ORDER BY created_at")
        return [MigrationRow(*r) for r in rows]

    def close(self) -> None:
        self._db.close()


_INSERT_KEY = (
    "INSERT INTO keys (id, org_id, name, scopes, secret, created_at) VALUES (?, ?, ?, ?, ?, ?)"
)
_UPSERT_IDP = """
    INSERT INTO idps (org_id, aud, iss, algs, mapping, key, jwks_url, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (org_id, aud, iss) DO UPDATE SET
        algs = excluded.algs, mapping = excluded.mapping, key = excluded.key,
        jwks_url = excluded.jwks_url
"""
_UPSERT_TOKEN_PROVIDER = """
    INSERT INTO token_providers (org_id, service, key_id, mapping, created_at)
    VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (org_id, service) DO UPDATE SET
        key_id = excluded.key_id, mapping = excluded.mapping
"""


def _key_args(key: KeyRow) -> tuple[Any, ...]:
    return (key.id, key.org_id, key.name, json.dumps(list(key.scopes)), key.secret, key.created_at)


def _idp_args(row: IdpRow) -> tuple[Any, ...]:
    return (
        row.org_id,
        row.aud or "",
        row.iss or "",
        json.dumps(list(row.algs)),
        json.dumps(row.mapping),
        row.key,
        row.jwks_url,
        row.created_at,
    )


def _token_provider_args(row: TokenProviderRow) -> tuple[Any, ...]:
    return (row.org_id, row.service, row.key_id, json.dumps(row.mapping), row.created_at)


def _token_provider(r: Any) -> TokenProviderRow:
    return TokenProviderRow(r[0], r[1], r[2], json.loads(r[3]), r[4])


def _key(r: Any) -> KeyRow:
    return KeyRow(r[0], r[1], r[2], tuple(json.loads(r[3])), r[4], r[5])


def _machine(r: Any) -> MachineRow:
    return MachineRow(r[0], r[1], tuple(json.loads(r[2])), r[3], r[4])
