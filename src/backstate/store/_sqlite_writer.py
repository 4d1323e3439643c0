"""The writer process of a SQLite store: the runtime's commits, made outside the server's
interpreter (why: _sqlite_plan).

Started at the first commit made from an event loop. ``submit`` sends the plan at once
(what the socket does not take goes when it is writable) and returns a future; the
event loop reads the answers as they come (a reader callback: no thread, so no GIL to
take back, and no task to schedule on either side) and resolves the futures in order, the
writer answering plans in the order it got them. A future cancelled meanwhile is skipped
when its answer comes. A writer that exits (killed, or its program failed) fails every
commit waiting with a StoreError, as a lost database connection would: whether those
were made is then unknown to the server, which reloads what it holds from the file (the
runtime's commit-failure path); the next commit starts another writer. The writer ends
when its socket is closed, so it never outlives the server: a server killed with SIGKILL
closes it too.
"""

from __future__ import annotations

import asyncio
import marshal
import socket
import subprocess
import sys
from collections import deque
from pathlib import Path

from . import _sqlite_plan
from ._protocol import SequenceConflict, StoreError
from ._records import CommitResult

PROGRAM = Path(_sqlite_plan.__file__)
EXIT_WAIT_S = 5.0
READ_SIZE = 1 << 16


class Writer:
    def __init__(self, path: Path, synchronous: str, busy_timeout_ms: int) -> None:
        self.args = [str(path), synchronous, str(busy_timeout_ms)]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._waiting: deque[asyncio.Future[CommitResult]] = deque()
        self._in = bytearray()
        self._out = bytearray()

    def submit(self, plan: _sqlite_plan.Plan) -> asyncio.Future[CommitResult]:
        """Send ``plan`` (its answer is the future's). Raises ValueError for a value the
        frame cannot hold (a bug of ours) and StoreError if no writer starts."""
        data = _sqlite_plan.frame(plan)
        loop = asyncio.get_running_loop()
        sock = self._connected(loop)
        future: asyncio.Future[CommitResult] = loop.create_future()
        self._waiting.append(future)
        if self._out:
            self._out += data
            return future
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._lost()
            return future
        if sent < len(data):
            self._out += memoryview(data)[sent:]
            loop.add_writer(sock, self._writable)
        return future

    def _connected(self, loop: asyncio.AbstractEventLoop) -> socket.socket:
        if self._socket is not None and self._loop is not loop:
            self._detach()  # its loop is gone (one asyncio.run after another): rewatch
        if self._socket is None:
            self._socket = self._start()
        if self._loop is not loop:
            self._loop = loop
            loop.add_reader(self._socket, self._readable)
        return self._socket

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
        return ours

    def _writable(self) -> None:
        assert self._socket is not None and self._loop is not None
        try:
            sent = self._socket.send(self._out)
        except BlockingIOError:
            return
        except OSError:
            self._lost()
            return
        del self._out[:sent]
        if not self._out:
            self._loop.remove_writer(self._socket)

    def _readable(self) -> None:
        assert self._socket is not None
        try:
            chunk = self._socket.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._lost()
            return
        buffer = self._in
        buffer += chunk
        start = 0
        while len(buffer) - start >= 4:
            end = start + 4 + int.from_bytes(buffer[start : start + 4], "little")
            if len(buffer) < end:
                break
            kind, detail = marshal.loads(buffer[start + 4 : end])
            start = end
            future = self._waiting.popleft()
            if future.cancelled():
                continue
            if kind == "ok":
                future.set_result(CommitResult(list(detail)))
            elif kind == "conflict":
                future.set_exception(SequenceConflict(str(detail)))
            else:
                future.set_exception(StoreError(f"commit failed: {detail}"))
        del buffer[:start]

    def _lost(self) -> None:
        """The writer is gone: every commit waiting fails, the next starts another."""
        code = self._end()
        self._fail(f"commit failed: the SQLite writer process exited (status {code})")

    def _fail(self, error: str) -> None:
        waiting, self._waiting = self._waiting, deque()
        for future in waiting:
            if not future.done():
                future.set_exception(StoreError(error))

    def _detach(self) -> None:
        loop, sock = self._loop, self._socket
        self._loop = None
        if loop is not None and sock is not None and not loop.is_closed():
            loop.remove_reader(sock)
            loop.remove_writer(sock)

    def close(self) -> None:
        """End the writer (its program sees the end of input and exits once the commit
        it runs, if any, is done); commits still waiting fail."""
        self._end()
        self._fail("commit failed: the store was closed")

    def _end(self) -> int | None:
        """The writer's exit status once it has ended, or None if there was none."""
        self._detach()
        sock, process = self._socket, self._process
        self._socket = self._process = None
        self._in.clear()
        self._out.clear()
        if sock is not None:
            sock.close()
        if process is None:
            return None
        try:
            return process.wait(EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()
