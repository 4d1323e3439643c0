"""Ownership: which instances this process may run.

An instance belongs to shard ``crc32("machine/name") % 64``. With SQLite (one process)
``SoleOwner`` owns every shard. With many nodes on PostgreSQL, ``Cluster`` holds shard
leases (``backstate.store._leases``): every ``HEARTBEAT`` seconds it renews them and
claims expired ones up to its fair share (``ceil(64 / live nodes)``), releasing extras
when nodes join. A shard is handed to the processor (recovered: its unfinished effects,
inbox rows and timers) before ``owns`` says yes, and taken back (its work dropped,
callers answered 503) when its lease is released, lost or cannot be renewed in time.

Messages to instances owned elsewhere, and committed states, are announced with
``NOTIFY``; ``Cluster`` listens, loads the announced inbox rows of its instances, and
reloads the instances other nodes changed that have subscribers here. A sweep every
``SWEEP`` seconds picks up inbox rows whose notification was lost: the rows added since
two sweeps ago (a row's id is drawn before its transaction commits, so a sweep looks
back), and all of them every ``FULL_SWEEP_EVERY`` sweeps and whenever the listener
reconnects.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import math
import secrets
import time
import zlib
from typing import TYPE_CHECKING, Protocol

from backstate.store import InstanceKey, StoreError
from backstate.store._protocol import ADOPT_CHANNEL, INBOX_CHANNEL, STATE_CHANNEL

if TYPE_CHECKING:
    from backstate.store._leases import Leases, Listener

    from ._processor import Processor

logger = logging.getLogger("backstate.runtime")

SHARDS = 64
HEARTBEAT = 1.0
TTL = 5.0
SWEEP = 1.5
FULL_SWEEP_EVERY = 20
# A node stops using a lease this long before the database would let another claim it.
MARGIN = 1.5


def shard_of(key: InstanceKey) -> int:
    return zlib.crc32(f"{key[0]}/{key[1]}".encode()) % SHARDS


class Ownership(Protocol):
    @property
    def node(self) -> str | None:
        """None: one process owns everything; there is nothing to fence."""
        ...

    def owns(self, key: InstanceKey) -> bool: ...


class SoleOwner:
    node: str | None = None

    def owns(self, key: InstanceKey) -> bool:
        return True


class Cluster:
    """This node's share of the instances on a PostgreSQL store shared by many nodes."""

    def __init__(self, url: str) -> None:
        self.node = secrets.token_hex(8)
        self.url = url
        self.held: set[int] = set()  # recovered and running here
        self.owners: dict[int, tuple[str, str]] = {}  # as of the last heartbeat
        self.valid_until = 0.0
        self.processor: Processor | None = None
        self.leases: Leases | None = None
        self._listener: Listener | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loads: asyncio.Queue[InstanceKey | None] = asyncio.Queue()
        self._pending: set[InstanceKey | None] = set()
        self._full_sweep = True
        self._swept = collections.deque([0, 0], maxlen=2)  # highest ids the last sweeps saw
        self._refresh: set[InstanceKey] = set()
        self._closing = False

    def owns(self, key: InstanceKey) -> bool:
        return shard_of(key) in self.held

    def owner_url(self, key: InstanceKey) -> str | None:
        """Where requests for ``key`` go: None if here or if no node runs it yet."""
        owner = self.owners.get(shard_of(key))
        if owner is None or owner[0] == self.node or self.owns(key):
            return None
        return owner[1]

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, processor: Processor) -> None:
        from backstate.store import PostgresStore
        from backstate.store._leases import Leases, Listener

        store = processor.store
        if not isinstance(store, PostgresStore):
            raise TypeError("many nodes need a PostgreSQL store")
        self.processor = processor
        self.leases = Leases(store, self.node, self.url, TTL)
        loop = asyncio.get_running_loop()
        self._listener = Listener(
            store.db.conninfo,
            lambda channel, lines: loop.call_soon_threadsafe(self._notified, channel, lines),
            lambda: loop.call_soon_threadsafe(self._sweep_all),
        )
        self._listener.start()
        await self._beat()
        self._tasks = [
            asyncio.create_task(self._heartbeats(), name="backstate-heartbeat"),
            asyncio.create_task(self._load_inboxes(), name="backstate-inbox-loads"),
            asyncio.create_task(self._sweeps(), name="backstate-sweeps"),
        ]

    async def stop(self) -> None:
        """Stop heartbeats and notifications (then close the processor, then leave)."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._listener is not None:
            await asyncio.to_thread(self._listener.stop)

    async def leave(self) -> None:
        """Hand every shard back at once, for other nodes to claim without waiting."""
        if self.leases is not None:
            with contextlib.suppress(StoreError):
                await asyncio.to_thread(self.leases.leave)
        self.held.clear()

    # -- leases -------------------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self._beat()
            except StoreError as exc:
                logger.warning("heartbeat failed: %s", exc)
                if self.held and time.monotonic() > self.valid_until:
                    logger.error("leases not renewed in time: dropping every shard")
                    self._lose(set(self.held))

    async def _beat(self) -> None:
        assert self.leases is not None and self.processor is not None
        started = time.monotonic()
        renewed, live = await asyncio.to_thread(self.leases.heartbeat)
        self.valid_until = started + TTL - MARGIN
        lost = self.held - renewed
        if lost:
            logger.warning("lost the leases of shards %s", sorted(lost))
            self._lose(lost)
        fair = math.ceil(SHARDS / max(live, 1))
        extra = len(renewed) - fair
        if extra > 0:
            handed = set(sorted(renewed & self.held)[:extra])
            self._lose(handed)
            await asyncio.to_thread(self.leases.release, handed)
            renewed -= handed
        # Shards held in the database but not yet recovered here (a failed recovery).
        claimed = renewed - self.held
        if len(renewed) < fair:
            claimed |= await asyncio.to_thread(self.leases.claim, fair - len(renewed))
        if claimed:
            await self.processor.recovery.claim(claimed)
            self.held |= claimed
            self._enqueue_load(None)
        self.owners = await asyncio.to_thread(self.leases.owners)

    def _lose(self, shards: set[int]) -> None:
        assert self.processor is not None
        self.held -= shards
        self.processor.recovery.lose(shards)

    # -- notifications ----------------------------------------------------------------------

    def _notified(self, channel: str, lines: list[str]) -> None:
        processor = self.processor
        if channel == STATE_CHANNEL:
            for line in lines:
                machine, _, rest = line.partition("/")
                name, _, seq = rest.rpartition("/")
                key = (machine, name)
                if (
                    not self.owns(key)
                    and processor is not None
                    and processor.recovery.observes(key, int(seq))
                ):
                    self._refresh.add(key)
                    self._enqueue_load(key)
            return
        if channel not in (INBOX_CHANNEL, ADOPT_CHANNEL):
            return
        for line in lines:
            machine, _, name = line.partition("/")
            key = (machine, name)
            if self.owns(key):
                if channel == ADOPT_CHANNEL:
                    self._refresh.add(key)
                self._enqueue_load(key)

    def _enqueue_load(self, key: InstanceKey | None) -> None:
        """``None``: sweep every owned instance's inbox."""
        if key not in self._pending:
            self._pending.add(key)
            self._loads.put_nowait(key)

    def _sweep_all(self) -> None:
        self._full_sweep = True
        self._enqueue_load(None)

    async def _sweeps(self) -> None:
        for count in itertools.count(1):
            await asyncio.sleep(SWEEP)
            if count % FULL_SWEEP_EVERY == 0:
                self._full_sweep = True
            self._enqueue_load(None)

    async def _load_inboxes(self) -> None:
        """One load at a time, so rows reach each queue in delivery order."""
        assert self.leases is not None and self.processor is not None
        leases, processor = self.leases, self.processor
        while True:
            key = await self._loads.get()
            self._pending.discard(key)
            try:
                if key is None:
                    full, self._full_sweep = self._full_sweep, False
                    after = 0 if full else self._swept[0]
                    try:
                        rows = await asyncio.to_thread(processor.store.pending_inbox, after)
                    except StoreError:
                        self._full_sweep = self._full_sweep or full
                        raise
                    self._swept.append(max([self._swept[-1], *(r.id for r in rows)]))
                    processor.recovery.load_inbox(rows)
                    continue
                if key in self._refresh:
                    self._refresh.discard(key)
                    if self.owns(key):
                        timers = await asyncio.to_thread(leases.timers_of, key)
                        await processor.recovery.adopt(key, timers)
                    else:
                        await processor.recovery.refresh(key)
                        continue
                rows = await asyncio.to_thread(leases.inbox_of, [key])
                processor.recovery.load_inbox(rows)
            except StoreError as exc:
                logger.warning("loading inbox rows failed (%s); the next sweep retries", exc)
