"""A small bounded map of values that hold until a time: what the server keeps of keys,
machines and verified tokens between requests; and the read-through cache of the control
store's rows that never makes the event loop wait for a store that hangs."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, Literal, TypeVar

from backstate.store import StoreError

logger = logging.getLogger("backstate.server")

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

    def held(self, key: K) -> tuple[V, float] | None:
        """The value and its time, even past that time."""
        return self._entries.get(key)

    def put(self, key: K, value: V, until: float) -> None:
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[key] = (value, until)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class StoreHealth:
    """Whether the control store failed the last read that reached it: while it has, a
    read that would have to wait for it on the event loop fails at once instead."""

    def __init__(self) -> None:
        self.down = False


class ReadThrough(Generic[K, V]):
    """The control store's rows the server reads on every request (keys, machines), held
    for ``ttl`` seconds. Once a row is older, a caller on the event loop gets it at once
    while a thread reads it again: a store that hangs (PostgreSQL restarting) then never
    stalls the loop, and so never the requests that need no store, nor ``/readyz``. A row
    never read is read where the caller is, unless the store is known to be down: then
    ``StoreError`` at once, while a thread tries again. Held rows are served for at most
    ``stale_limit`` seconds past their time. Off the event loop everything is read in
    place."""

    def __init__(
        self,
        read: Callable[[K], V],
        ttl: float,
        executor: ThreadPoolExecutor,
        health: StoreHealth,
        stale_limit: float = 30.0,
    ) -> None:
        self._read = read
        self.ttl = ttl
        self.stale_limit = stale_limit
        self._executor = executor
        self._health = health
        self._entries: Expiring[K, V] = Expiring()
        self._reading: set[K] = set()
        self._generation = 0  # bumped by clear(): a read begun before it is not kept

    def get(self, key: K) -> V:
        now = time.monotonic()
        held = self._entries.held(key)
        if held is not None and held[1] > now:
            return held[0]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._read_here(key, now)
        if held is not None and now < held[1] + self.stale_limit:
            self._read_behind(key, loop)
            return held[0]
        if self._health.down:
            self._read_behind(key, loop)
            raise StoreError("the store is unavailable (the last read of it failed)")
        return self._read_here(key, now)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    def _read_here(self, key: K, now: float) -> V:
        try:
            value = self._read(key)
        except StoreError:
            self._health.down = True
            raise
        self._health.down = False
        self._entries.put(key, value, now + self.ttl)
        return value

    def _read_behind(self, key: K, loop: asyncio.AbstractEventLoop) -> None:
        if key in self._reading:
            return
        self._reading.add(key)
        generation = self._generation

        def done(future: asyncio.Future[V]) -> None:
            self._reading.discard(key)
            exc = future.exception()
            if isinstance(exc, StoreError):
                self._health.down = True
                return
            if exc is not None:
                logger.error("reading the control store failed", exc_info=exc)
                return
            self._health.down = False
            if generation == self._generation:
                self._entries.put(key, future.result(), time.monotonic() + self.ttl)

        loop.run_in_executor(self._executor, self._read, key).add_done_callback(done)
