"""A throwaway PostgreSQL database for a test session, and a fresh schema per test.

The server is the local one (``scripts/test`` starts it): 127.0.0.1:5432, trust auth,
user ``postgres``; ``BACKSTATE_TEST_POSTGRES`` overrides the admin URL.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

ADMIN_URL = os.environ.get(
    "BACKSTATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def throwaway_database() -> Iterator[str]:
    """``CREATE DATABASE backstate_test_<pid>_<random>``, dropped (connections and all)
    at exit; databases left by test processes that were killed are dropped first."""
    name = f"backstate_test_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        for (stale,) in admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'backstate\\_test\\_%'"
        ).fetchall():
            if not _running(stale.split("_")[2]):
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(stale))
                )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_database(ADMIN_URL, name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def fresh_schema(database_url: str) -> str:
    """A new empty schema in the database; a URL whose connections use only it."""
    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    return f"{database_url}?options=-csearch_path%3D{name}"


def rows(url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run one statement (``?`` placeholders) on a connection of its own."""
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query.replace("?", "%s").encode(), args)
        return cur.fetchall() if cur.description else []


def terminate_backstate_connections(url: str) -> int:
    """Kill the server side of every backstate connection to this database (not ours)."""
    with psycopg.connect(url, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'backstate'"
            " AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(killed[0]) if killed else 0


def _running(pid: str) -> bool:
    """Whether the test process ``pid`` (this machine's) is alive; unknown names are."""
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"
