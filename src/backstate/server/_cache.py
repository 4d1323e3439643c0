"""A small bounded map of values that hold until a time: what the server keeps of keys,
machines and verified tokens between requests."""

from __future__ import annotations

import enum
from typing import Generic, Literal, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Miss(enum.Enum):
    MISS = 0


MISS = Miss.MISS


class Expiring(Generic[K, V]):
    """``put(key, value, until)``; ``get(key, now)`` is the value while ``now < until``,
    else ``MISS``. When ``limit`` entries are held, a new one clears them all (a cache
    of hot entries refills at once; an attacker's junk keys never pile up)."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._entries: dict[K, tuple[V, float]] = {}

    def get(self, key: K, now: float) -> V | Literal[Miss.MISS]:
        hit = self._entries.get(key)
        return hit[0] if hit is not None and hit[1] > now else MISS

    def put(self, key: K, value: V, until: float) -> None:
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[key] = (value, until)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
