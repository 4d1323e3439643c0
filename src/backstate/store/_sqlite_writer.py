"""The writer process of a SQLite store: the runtime's commits, made outside the server's
interpreter (why: _sqlite_plan).

Started at the first commit made from an event loop; one plan in flight at a time,
answered in order, over a socket pair the loop waits on (no thread, so no GIL to take
back when the answer comes). A writer that exits (killed, or its program failed) fails the
commit in flight with a StoreError, as a lost database connection would: whether that
commit was made is then unknown to the server, which reloads what it holds from the
file (the runtime's commit-failure path); the next commit starts another writer. The
writer ends when its socket is closed, so it never outlives the server: a server killed
with SIGKILL closes it too.
"""

from __future__ import annotations

import asyncio
import marshal
import socket
import subprocess
import sys
from pathlib import Path

from . import _sqlite_plan
from ._protocol import SequenceConflict, StoreError

PROGRAM = Path(_sqlite_plan.__file__)
EXIT_WAIT_S = 5.0


class Writer:
    def __init__(self, path: Path, synchronous: str, busy_timeout_ms: int) -> None:
        self.args = [str(path), synchronous, str(busy_timeout_ms)]
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None

    async def commit(self, plan: _sqlite_plan.Plan) -> list[int]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # (the lock is the loop's)
            self._loop, self._lock = loop, asyncio.Lock()
        assert self._lock is not None
        async with self._lock:
            sock = self._socket or self._start()
            try:
                await loop.sock_sendall(sock, _sqlite_plan.frame(plan))
                size = int.from_bytes(await _receive(loop, sock, 4), "little")
                kind, detail = marshal.loads(await _receive(loop, sock, size))
            except (ConnectionError, EOFError) as exc:
                code = self.close()
                raise StoreError(
                    f"commit failed: the SQLite writer process exited (status {code})"
                ) from exc
            except BaseException:
                # Cancelled with its answer still to come: that answer must not be
                # taken for the next commit's. The writer finishes the commit it has
                # whole (as a commit on a thread would), then sees the end and exits.
                self.close()
                raise
        if kind == "ok":
            return list(detail)
        if kind == "conflict":
            raise SequenceConflict(str(detail))
        raise StoreError(f"commit failed: {detail}")

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", str(PROGRAM), str(theirs.fileno()), *self.args],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            ours.close()
            raise StoreError(f"commit failed: the SQLite writer did not start: {exc}") from exc
        finally:
            theirs.close()
        ours.setblocking(False)
        self._socket = ours
        return ours

    def close(self) -> int | None:
        """End the writer (its program sees the end of input and exits once the commit
        it runs, if any, is done): its exit status, or None if there was none."""
        sock, process = self._socket, self._process
        self._socket = self._process = None
        if sock is not None:
            sock.close()
        if process is None:
            return None
        try:
            return process.wait(EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()


async def _receive(loop: asyncio.AbstractEventLoop, sock: socket.socket, size: int) -> bytes:
    data = bytearray(size)
    view, got = memoryview(data), 0
    while got < size:
        n = await loop.sock_recv_into(sock, view[got:])
        if n == 0:
            raise EOFError
        got += n
    return bytes(data)
