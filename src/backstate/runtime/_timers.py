"""TimerWheel: the in-memory index of durable timers, ordered by due time.

The store holds the timers; this only says which is due next. Cancelling or replacing
a timer bumps its generation, so a stale heap entry is skipped when it surfaces.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backstate.store import InstanceKey


@dataclass(slots=True)
class Due:
    key: InstanceKey
    timer: str
    event: dict[str, Any]
    to: str
    attempts: int
    generation: int


class TimerWheel:
    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Due]] = []
        self._current: dict[tuple[InstanceKey, str], int] = {}
        self._gen = itertools.count(1)
        # While a step writes (Steps.section): each timer's generation before the step
        # changed it, to undo the step.
        self._journal: dict[tuple[InstanceKey, str], int | None] | None = None

    def journal(self) -> dict[tuple[InstanceKey, str], int | None]:
        self._journal = {}
        return self._journal

    def rollback(self, journal: dict[tuple[InstanceKey, str], int | None]) -> None:
        for timer, generation in journal.items():
            if generation is None:
                self._current.pop(timer, None)
            else:
                self._current[timer] = generation

    def close(self, journal: dict[tuple[InstanceKey, str], int | None]) -> None:
        if self._journal is journal:
            self._journal = None

    def _record(self, timer: tuple[InstanceKey, str]) -> None:
        if self._journal is not None and timer not in self._journal:
            self._journal[timer] = self._current.get(timer)

    def add(
        self,
        key: InstanceKey,
        timer: str,
        due_ms: int,
        event: dict[str, Any],
        to: str,
        attempts: int = 0,
    ) -> None:
        generation = next(self._gen)
        self._record((key, timer))
        self._current[(key, timer)] = generation
        heapq.heappush(
            self._heap, (due_ms, generation, Due(key, timer, event, to, attempts, generation))
        )

    def cancel(self, key: InstanceKey, timer: str) -> None:
        self._record((key, timer))
        self._current.pop((key, timer), None)

    def forget_instance(self, key: InstanceKey) -> None:
        for k in [k for k in self._current if k[0] == key]:
            del self._current[k]

    def forget_where(self, drop: Callable[[InstanceKey], bool]) -> None:
        for k in [k for k in self._current if drop(k[0])]:
            del self._current[k]

    def has(self, key: InstanceKey, timer: str) -> bool:
        return (key, timer) in self._current

    def timers_of(self, key: InstanceKey) -> list[Due]:
        """The pending timers of one instance (a scan: for rare operations only)."""
        return [d for _, _, d in self._heap if d.key == key and self.is_current(d)]

    def due_times_of(self, key: InstanceKey) -> dict[str, int]:
        """The pending timers of one instance and when each is due (ms; a scan)."""
        return {d.timer: t for t, _, d in self._heap if d.key == key and self.is_current(d)}

    def is_current(self, due: Due) -> bool:
        return self._current.get((due.key, due.timer)) == due.generation

    def next_due(self) -> int | None:
        while self._heap and not self.is_current(self._heap[0][2]):
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now_ms: int) -> list[Due]:
        out: list[Due] = []
        while self._heap and self._heap[0][0] <= now_ms:
            _, _, due = heapq.heappop(self._heap)
            if self.is_current(due):
                out.append(due)
        return out

    def __len__(self) -> int:
        return len(self._current)
