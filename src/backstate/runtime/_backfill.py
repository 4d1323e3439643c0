"""IndexBackfill: indexes added to a machine that already has instances.

Adding an index records it in the store as ``backfilling`` (store/_backfills) and puts
its selector in the registry at once, so every transition committed from then on
writes the new index's entries with the instance's others. A background task walks the
existing instances in key order, a batch per transaction that writes their entries and
moves the cursor; after a crash the next start (or, on many nodes, whichever node takes
the lease) goes on from the cursor.

Why a grace period before the walk starts (``GRACE_MS``): a transition that was built
before the index was known, or on a node that has not yet read the index from the
store (each node reads them every ``POLL_S``), would replace an instance's entries
without the new index after the walk had passed it. Waiting until every node knows
the index, and every round built before it has committed, closes that window.

Selectors are JSONPath (or ``@state``) evaluated here, never user code. A value that
cannot be indexed is skipped and counted, as a transition skips and logs it; an
instance whose stored state cannot be read fails the backfill, naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from typing import Any

from backstate.store import IndexBackfillRow, IndexEntry, Store, StoreError

from ._deployments import Registry
from ._errors import NotFound
from ._indexes import IndexSpec, compile_selectors, index_entries, value_state_strings

logger = logging.getLogger("backstate.runtime")

GRACE_MS = 2000  # see the module's docstring
POLL_S = 1.0  # how often every node reads the added indexes
LEASE_MS = 5000  # a backfill's lease, renewed by every step, released at a clean close
RETRY_S = 1.0  # after a store error


class BackfillFailed(Exception):
    pass


class IndexBackfill:
    """Runs the backfills this process holds the lease of (``batch`` instances per
    transaction, ``pause`` seconds between transactions to spare the store), and keeps
    the registry's added indexes in step with the store's."""

    def __init__(self, store: Store, registry: Registry, batch: int, pause: float) -> None:
        if batch < 1:
            raise ValueError(f"a backfill batch needs at least one instance, not {batch}")
        if pause < 0:
            raise ValueError(f"a backfill pause cannot be negative, not {pause}")
        self.store = store
        self.registry = registry
        self.batch = batch
        self.pause = pause
        self.owner = "bf_" + secrets.token_hex(8)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def load(self) -> list[IndexBackfillRow]:
        """Read the added indexes into the registry (before any transition runs)."""
        rows = self.store.index_backfills()
        added: dict[str, dict[str, IndexSpec]] = {}
        for row in rows:
            (spec,) = compile_selectors({row.name: row.selector})
            added.setdefault(row.machine, {})[row.name] = spec
        self.registry.added = added
        return rows

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="backstate-backfill")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            try:
                await asyncio.to_thread(self.store.release_backfills, self.owner)
            except StoreError as exc:  # the lease runs out by itself
                logger.warning("could not release index backfills: %s", exc)

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                rows = await asyncio.to_thread(self.load)
                for row in rows:
                    if row.state == "backfilling":
                        await self._run(row)
            except StoreError as exc:
                logger.warning("index backfills: %s", exc)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)

    async def _run(self, row: IndexBackfillRow) -> None:
        machine, name = row.machine, row.name
        claimed = await asyncio.to_thread(
            self.store.claim_backfill, machine, name, self.owner, LEASE_MS, GRACE_MS
        )
        if not claimed:
            return
        logger.info("backfilling index %s of %s from %r", name, machine, row.after or "the start")
        (added,) = compile_selectors({name: row.selector})
        while True:
            try:
                progress = await asyncio.to_thread(
                    self.store.backfill_step,
                    machine,
                    name,
                    self.owner,
                    self.batch,
                    lambda rows: self._compute(machine, added, rows),
                    LEASE_MS,
                )
            except BackfillFailed as exc:
                logger.error("index %s of %s: backfill failed: %s", name, machine, exc)
                await asyncio.to_thread(
                    self.store.fail_backfill, machine, name, self.owner, str(exc)
                )
                return
            if progress is None:
                return  # another node holds it now
            if progress.state != "backfilling":
                logger.info("index %s of %s is ready (%d instances)", name, machine, progress.done)
                return
            if self.pause:
                await asyncio.sleep(self.pause)
            elif progress.done == row.done:
                await asyncio.sleep(0.05)  # the next instance is being committed
            row = progress

    def _compute(
        self, machine: str, added: IndexSpec, rows: list[tuple[str, str, str]]
    ) -> tuple[list[tuple[str, frozenset[IndexEntry]]], list[str]]:
        out: list[tuple[str, frozenset[IndexEntry]]] = []
        skipped: list[str] = []
        for instance, version_id, text in rows:
            try:
                snapshot = json.loads(text) if isinstance(text, str) else text
                context, value = snapshot["context"], snapshot["value"]
            except (ValueError, TypeError, KeyError) as exc:
                raise BackfillFailed(
                    f"instance {instance!r}: its stored state cannot be read: {exc}"
                ) from exc
            spec = self._spec(machine, version_id, added)
            entries, notes = index_entries((spec,), context, value_state_strings(value))
            out.append((instance, entries))
            skipped.extend(f"instance {instance!r}: {note}" for note in notes)
        return out, skipped

    def _spec(self, machine: str, version_id: str, added: IndexSpec) -> IndexSpec:
        """The selector a transition of the instance's version would use."""
        try:
            version = self.registry.get(machine, version_id)
        except NotFound:
            return added
        own: dict[str, Any] = {s.name: s for s in version.indexes}
        spec: IndexSpec = own.get(added.name, added)
        return spec
