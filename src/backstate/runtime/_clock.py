"""Clocks: the runtime reads time only through one of these.

``SystemClock`` is wall time in milliseconds. ``SimulatedClock`` moves only when a test
calls ``advance``; durable timers then fire as if that much time had passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...

    def seconds_until(self, due_ms: int) -> float | None:
        """Real seconds to wait for ``due_ms``; None means only a wake-up will do."""
        ...

    def on_advance(self, callback: Callable[[], None]) -> None: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def seconds_until(self, due_ms: int) -> float | None:
        return max(0.0, (due_ms - time.time_ns() / 1_000_000) / 1000)

    def on_advance(self, callback: Callable[[], None]) -> None:
        pass


class SimulatedClock:
    def __init__(self, now_ms: int = 0) -> None:
        self._now = now_ms
        self._listeners: list[Callable[[], None]] = []

    def now_ms(self) -> int:
        return self._now

    def seconds_until(self, due_ms: int) -> float | None:
        return 0.0 if due_ms <= self._now else None

    def on_advance(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def advance(self, ms: int) -> None:
        self._now += ms
        for callback in self._listeners:
            callback()
