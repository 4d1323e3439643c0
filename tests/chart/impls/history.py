"""Implementations for cases ported from xstate packages/core/test/history.test.ts."""

from typing import Any

_log: list[Any] = []


def bind_log(log: list[Any]) -> None:
    global _log
    _log = log


def spy(input: Any) -> None:
    _log.append("invoked")


ACTORS = {"spy": spy}
