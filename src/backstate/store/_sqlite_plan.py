"""A commit to the SQLite file as data: the statements and their rows, run in one
transaction here or in the writer process (_sqlite_writer), whose program this module
also is.

Why a process: a commit made on a thread of the server gave the GIL back at every
statement step and waited to take it again while the event loop ran Python, so a commit
of 16 transitions took about 3 ms there against 0.7 ms alone, and the commits bounded
send-event throughput; made on the event loop, it held the loop for all that time. A
process of its own takes the plan in one frame, runs it with its own interpreter and
answers in one frame. Run as a program (``python -I _sqlite_plan.py FD PATH SYNCHRONOUS
BUSY_MS``) it imports nothing but the standard library, so it starts in milliseconds.

A plan is a list of operations, each a tuple:

* ``("many", sql, rows)``: ``executemany``;
* ``("updates", sql, rows)``: ``executemany`` of instance updates whose rows end with
  (machine, name, expected seq) and carry the new seq second: each must change its row,
  or the whole commit is refused (``Conflict``, naming the first that did not);
* ``("ids", sql, rows)``: one ``execute`` per row, the rowids kept in order (the result);
* ``("exec", sql, args)``: one ``execute``.

Frames both ways are a 4-byte little-endian length and ``marshal`` data (the peers are
this program and the server, nothing else reads them). The answer is ``("ok", ids)``,
``("conflict", message)`` or ``("error", message)``. End of input ends the program.
"""

from __future__ import annotations

import marshal
import os
import signal
import sqlite3
import sys
from typing import Any

Plan = list[tuple[Any, ...]]


class Conflict(Exception):
    """An instance update found its row at another sequence number."""


def run(db: sqlite3.Connection, plan: Plan) -> list[int]:
    """Run ``plan`` on ``db`` (inside the caller's transaction): the rowids of its
    ``ids`` operations."""
    ids: list[int] = []
    for op in plan:
        kind, sql, rows = op
        if kind == "many":
            db.executemany(sql, rows)
        elif kind == "updates":
            before = db.total_changes
            db.executemany(sql, rows)
            if db.total_changes - before != len(rows):
                raise Conflict(_conflict(db, rows))
        elif kind == "ids":
            for row in rows:
                ids.append(int(db.execute(sql, row).lastrowid or 0))
        else:
            db.execute(sql, rows)
    return ids


def _conflict(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> str:
    for row in rows:
        machine, name, expected = row[-3:]
        found = db.execute(
            "SELECT seq FROM instances WHERE machine = ? AND name = ?", (machine, name)
        ).fetchone()
        if found is None or found[0] != row[1]:
            return f"{machine}/{name} is no longer at sequence {expected}"
    return "an instance is no longer at the sequence expected"


def frame(value: Any) -> bytes:
    data = marshal.dumps(value)
    return len(data).to_bytes(4, "little") + data


def _read(fd: int, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _serve(fd: int, path: str, synchronous: str, busy_ms: int) -> None:
    # The server ends this program by closing its end (after the last commit of a
    # shutdown): a signal meant for the server's process group must not cut that short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout = {busy_ms}")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    while True:
        head = _read(fd, 4)
        body = None if head is None else _read(fd, int.from_bytes(head, "little"))
        if body is None:
            db.close()
            return
        answer: tuple[Any, ...]
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                ids = run(db, marshal.loads(body))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            answer = ("ok", ids)
        except Conflict as exc:
            answer = ("conflict", str(exc))
        except sqlite3.Error as exc:
            answer = ("error", str(exc))
        _write(fd, frame(answer))


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


if __name__ == "__main__":
    _serve(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]))
