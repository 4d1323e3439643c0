"""Capture of print() and logging from user code, per machine, version and instance.

User code runs inside ``scope(...)``; while a scope is set in the current context,
writes to ``sys.stdout``/``sys.stderr`` and records of its loggers reaching the root
logger are collected for the store instead of going to the terminal. The server's own
records (loggers ``backstate.*``, ``uvicorn.*``, ``asyncio``) are never captured: they go
to standard error (``log_to_stderr``, or Python's last resort when nothing is set up).
"""

from __future__ import annotations

import contextvars
import io
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from backstate.store import LogRow

Scope = tuple[str, str, str]  # machine, version, instance


class _Current:
    __slots__ = ("now_ms", "partial", "sink", "where")

    def __init__(
        self, where: Scope, sink: Callable[[LogRow], None], now_ms: Callable[[], int]
    ) -> None:
        self.where = where
        self.sink = sink
        self.now_ms = now_ms
        self.partial: dict[str, str] = {}

    def record(self, level: str, message: str) -> None:
        machine, version, instance = self.where
        self.sink(LogRow(self.now_ms(), machine, version, instance, level, message))

    def write(self, level: str, text: str) -> None:
        """print() writes in pieces; a row is one line."""
        buffered = self.partial.pop(level, "") + text
        *lines, rest = buffered.split("\n")
        for line in lines:
            self.record(level, line)
        if rest:
            self.partial[level] = rest

    def flush(self) -> None:
        for level, rest in self.partial.items():
            self.record(level, rest)
        self.partial.clear()


_scope: contextvars.ContextVar[_Current | None] = contextvars.ContextVar(
    "backstate_log_scope", default=None
)


class scope:
    """Collect what user code prints or logs while the block runs."""

    __slots__ = ("_current", "_token")

    def __init__(
        self, where: Scope, sink: Callable[[LogRow], None], now_ms: Callable[[], int]
    ) -> None:
        self._current = _Current(where, sink, now_ms)

    def __enter__(self) -> None:
        # Something (a test runner, a web server) may have replaced the streams since.
        if type(sys.stdout) is not _Stream:
            sys.stdout = _Stream(sys.stdout, "info")
        if type(sys.stderr) is not _Stream:
            sys.stderr = _Stream(sys.stderr, "error")
        self._token = _scope.set(self._current)

    def __exit__(self, *exc: object) -> None:
        if self._current.partial:
            self._current.flush()
        _scope.reset(self._token)


def now_ms() -> int:
    """The runtime's clock while user code runs (a simulated one in tests), else the
    system's."""
    current = _scope.get()
    return current.now_ms() if current is not None else time.time_ns() // 1_000_000


def capture(level: str, message: str) -> bool:
    """Record ``message`` if user code is running; whether it was recorded."""
    current = _scope.get()
    if current is None:
        return False
    current.record(level, message)
    return True


class _Stream(io.TextIOBase):
    def __init__(self, real: TextIO, level: str) -> None:
        self._real = real
        self._level = level

    def write(self, text: str) -> int:
        current = _scope.get()
        if current is None:
            return self._real.write(text)
        current.write(self._level, text)
        return len(text)

    def flush(self) -> None:
        self._real.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


# Loggers of the server itself: their records are the operator's, even when written
# while user code runs (the runtime reporting that code's failure).
_SERVER_LOGGERS = ("backstate", "uvicorn", "asyncio")


def user_record(record: logging.LogRecord) -> bool:
    """Whether ``record`` was logged by user code: while a scope is set, by a logger
    that is not one of the server's own."""
    if _scope.get() is None:
        return False
    name = record.name
    return not any(name == own or name.startswith(own + ".") for own in _SERVER_LOGGERS)


class _Handler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if user_record(record):
            capture(record.levelname.lower(), self.format(record))
            return
        # Python writes records to stderr when no handler is configured ("last
        # resort"); this handler must not count as one, or the server's own go nowhere.
        # They go to the real stderr, never into a user scope's capture.
        last = logging.lastResort
        if (
            last is not None
            and record.levelno >= last.level
            and logging.getLogger().handlers == [self]
        ):
            stream = sys.stderr
            real = stream._real if isinstance(stream, _Stream) else stream
            real.write(last.format(record) + "\n")


_installed = False


def install() -> None:
    """Route user code's logging through the capture (idempotent); streams are wrapped
    per scope."""
    global _installed
    if _installed:
        return
    _installed = True
    logging.getLogger().addHandler(_Handler())


def _servers_own(record: logging.LogRecord) -> bool:
    # httpx writes a line per request at info (the server's forwarding, dev's client).
    quiet = record.name.startswith("httpx") and record.levelno < logging.WARNING
    return not quiet and not user_record(record)


def log_to_stderr(level: str) -> None:
    """The server's own records at ``level`` and above to standard error, one line each
    (user code's records go to its instances' logs only)."""
    install()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_servers_own)
    handler.setLevel(level.upper())
    root = logging.getLogger()
    root.addHandler(handler)
    # User code's info records are captured whatever the server's own level is.
    root.setLevel(min(logging.INFO, handler.level))
