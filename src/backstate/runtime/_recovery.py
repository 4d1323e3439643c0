"""Picking work up from the store: at start (effects that never finished get their
error event, but retried services their next attempt, see _retries; queued messages and
timers are queued again), after a failed commit, and,
with many nodes (see _cluster), for the shards this node comes to run, loses, or hears
of through notifications."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from backstate.store import EffectRow, InboxRow, InstanceKey, StoreError, TimerRow, WriteBatch

from ._cluster import shard_of
from ._entries import Work
from ._errors import NotFound, Unavailable

if TYPE_CHECKING:
    from ._processor import Processor

logger = logging.getLogger("backstate.runtime")

# How long the ids of applied inbox rows are remembered, so that a read of the inbox
# that began before they were deleted cannot queue them again (many nodes).
GONE_SECONDS = 60.0


class Recovery:
    def __init__(self, processor: Processor) -> None:
        self.p = processor

    async def recover(self, keep: Callable[[InstanceKey], bool] | None = None) -> None:
        """Effects that were started but never finished get an error event (they are
        not run again); then queued messages and timers are picked up. Only of the
        instances ``keep`` says (by default: those this process owns)."""
        keep = keep or self.p.ownership.owns
        now = self.p.clock.now_ms()
        batch = WriteBatch()
        finished = set(self.p.pending_done)
        for eff in await asyncio.to_thread(self.p.store.unfinished_effects):
            if eff.id in finished or not keep((eff.machine, eff.instance)):
                continue
            if eff.kind == "service" and not await asyncio.to_thread(self._child_running, eff):
                batch.effect_done.append(eff.id)  # its state was left; nobody awaits it
                continue
            if eff.retry is not None and self.p.service_retries.recover(eff, batch, now):
                continue  # it waits for its next attempt (see _retries)
            error = {"name": "Interrupted", "message": "the process stopped while this effect ran"}
            if eff.kind == "service":
                error = self.p.service_retries.final_error(eff, error)
                event = {"type": f"xstate.error.actor.{eff.child}", "error": error}
            else:
                event = {
                    "type": "backstate.error.effect",
                    "effectId": eff.id,
                    "action": eff.name,
                    "error": error,
                }
            batch.inbox_inserts.append(
                InboxRow(0, eff.machine, eff.instance, event, "recovery", 0, 0, now)
            )
            batch.effect_done.append(eff.id)
        if batch:
            await asyncio.to_thread(self.p.store.commit, batch)
        for row in await asyncio.to_thread(self.p.store.pending_inbox):
            if row.id in self.p.queued_inbox or not keep((row.machine, row.instance)):
                continue
            work = Work(
                "inbox", row.event, sender=row.sender, inbox_id=row.id, attempts=row.attempts
            )
            if row.not_before > now and row.attempts:
                entry = self.p.entry((row.machine, row.instance))
                if entry is not None:
                    entry.blocked[row.sender] = max(
                        entry.blocked.get(row.sender, 0), row.not_before
                    )
            self.p.enqueue((row.machine, row.instance), work)
        for t in await asyncio.to_thread(self.p.store.pending_timers):
            if not keep((t.machine, t.instance)):
                continue
            self.p.wheel.add((t.machine, t.instance), t.key, t.due, t.event, t.to, t.attempts)
        self.p._wake.set()

    # -- ownership (many nodes, see _cluster) ------------------------------------------------

    async def claim(self, shards: set[int]) -> None:
        """Start running these shards: refresh what is cached of them, then recover."""
        for key, entry in list(self.p.entries.items()):
            if shard_of(key) in shards:
                row = await asyncio.to_thread(self.p.store.load_instance, key)
                if row is not None:
                    self.p._load(entry, row)
                    self.p.publish(entry, self.p.state(entry))
                elif not entry.subscribers:
                    self.p.entries.pop(key, None)
        await self.recover(lambda key: shard_of(key) in shards)

    def lose(self, shards: set[int]) -> None:
        """Stop running these shards at once: their callers get a 503 (to retry on the
        new owner); instances with subscribers stay, to follow the new owner's commits."""
        error = Unavailable("store-unavailable", "this node no longer runs that instance")
        for key, task in list(self.p.running.items()):
            if shard_of(key) in shards:
                task.cancel("store-unavailable")
        for key, entry in list(self.p.entries.items()):
            if shard_of(key) not in shards:
                continue
            for work in entry.queue:
                if work.inbox_id is not None:
                    self.p.queued_inbox.discard(work.inbox_id)
                self.p.reject(work, error)
            entry.queue.clear()
            for future, handle in entry.waiters:
                handle.cancel()
                if not future.done():
                    future.set_exception(error)
            entry.waiters = []
            self.p.waiting.discard(entry)
            for service in entry.services.values():
                service.task.cancel()
            entry.services.clear()
            entry.starting.clear()
            entry.blocked.clear()
            self.p.ready.pop(key, None)
            if not entry.subscribers and key not in self.p.uncommitted:
                del self.p.entries[key]
        self.p.wheel.forget_where(lambda key: shard_of(key) in shards)
        parked, self.p.parked = self.p.parked, []
        for key, work in parked:
            if shard_of(key) in shards:
                self.p.reject(work, error)
            else:
                self.p.parked.append((key, work))

    def load_inbox(self, rows: list[InboxRow]) -> None:
        """Queue inbox rows (in delivery order) of instances this node owns, each once."""
        now = time.monotonic()
        if len(self.p.gone_inbox) > 10_000 or (
            self.p.gone_inbox and next(iter(self.p.gone_inbox.values())) < now - GONE_SECONDS
        ):
            self.p.gone_inbox = {
                i: t for i, t in self.p.gone_inbox.items() if t > now - GONE_SECONDS
            }
        for row in rows:
            key = (row.machine, row.instance)
            if (
                row.id in self.p.queued_inbox
                or row.id in self.p.gone_inbox
                or not self.p.ownership.owns(key)
            ):
                continue
            work = Work(
                "inbox", row.event, sender=row.sender, inbox_id=row.id, attempts=row.attempts
            )
            if row.not_before > self.p.clock.now_ms() and row.attempts:
                entry = self.p.entry(key)
                if entry is not None:
                    entry.blocked[row.sender] = max(
                        entry.blocked.get(row.sender, 0), row.not_before
                    )
                    self.p.retry_later(entry, row.not_before)
            self.p.enqueue(key, work)

    async def adopt(self, key: InstanceKey, timers: list[TimerRow]) -> None:
        """An instance another node created in this node's shard: run its timers."""
        for t in timers:
            if not self.p.wheel.has(key, t.key):
                self.p.wheel.add(key, t.key, t.due, t.event, t.to, t.attempts)
        self.p._wake.set()

    def observes(self, key: InstanceKey, seq: int) -> bool:
        """Whether a commit of ``key`` by another node concerns a subscriber here."""
        entry = self.p.entries.get(key)
        return entry is not None and bool(entry.subscribers) and seq > entry.seq

    async def refresh(self, key: InstanceKey) -> None:
        """Reload an instance another node runs and tell its subscribers here."""
        row = await asyncio.to_thread(self.p.store.load_instance, key)
        entry = self.p.entries.get(key)
        if row is None or entry is None or self.p.ownership.owns(key) or row.seq <= entry.seq:
            return
        try:
            self.p._load(entry, row)
        except NotFound:
            return  # a version deployed on another node only
        self.p.publish(entry, self.p.state(entry))

    def _child_running(self, eff: EffectRow) -> bool:
        row = self.p.store.load_instance((eff.machine, eff.instance))
        children = (row.snapshot.get("children") or {}) if row is not None else {}
        return eff.child in children

    async def recover_when_possible(self) -> None:
        delay = 0.05
        while not self.p.closing:
            try:
                await self.recover()
                return
            except (StoreError, Unavailable) as exc:
                logger.warning("store still failing (%s); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
