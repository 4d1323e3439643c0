"""Choosing a store from a URL: ``postgresql://...`` (or ``postgres://``) is PostgreSQL;
``sqlite:///relative.db``, ``sqlite:////absolute.db`` (SQLAlchemy's spelling) or a plain
path is a SQLite file."""

from __future__ import annotations

import re
from pathlib import Path

from ._control import ControlStore
from ._protocol import Store
from ._sqlite import SQLiteStore

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def open_store(url: str | Path, *, synchronous: str = "FULL") -> Store:
    """The runtime's store at ``url`` (``synchronous`` applies to SQLite only)."""
    target = _parse(url)
    if isinstance(target, Path):
        return SQLiteStore(target, synchronous=synchronous)
    from ._postgres import PostgresStore

    return PostgresStore(target)


def open_control(url: str | Path) -> ControlStore:
    """The control plane's store at ``url``, in the same database as ``open_store``'s."""
    target = _parse(url)
    if isinstance(target, Path):
        return ControlStore(target)
    from ._postgres import PostgresDatabase

    return ControlStore(PostgresDatabase(target, max_size=4))


def _parse(url: str | Path) -> str | Path:
    """A Path for SQLite, the URL itself for PostgreSQL."""
    if isinstance(url, Path):
        return url
    match = _SCHEME.match(url)
    if match is None:
        return Path(url)
    scheme = match.group(1).lower()
    if scheme in ("postgresql", "postgres"):
        return url
    if scheme == "sqlite" and url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    raise ValueError(
        f"unsupported store URL {url!r}: use a path, sqlite:///path or postgresql://..."
    )
