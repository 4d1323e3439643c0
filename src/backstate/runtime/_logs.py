"""Capture of print() and logging from user code, per machine, version and instance.

User code runs inside ``scope(...)``; while a scope is set in the current context,
writes to ``sys.stdout``/``sys.stderr`` and records reaching the root logger are
collected for the store instead of (for print) going to the terminal.
"""

from __future__ import annotations

import contextvars
import io
import logging
import sys
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


class _Handler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if _scope.get() is not None:
            capture(record.levelname.lower(), self.format(record))


_installed = False


def install() -> None:
    """Route logging through the capture (idempotent); streams are wrapped per scope."""
    global _installed
    if _installed:
        return
    _installed = True
    logging.getLogger().addHandler(_Handler())
