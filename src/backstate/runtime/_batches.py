"""Batches: a round's sandboxed transitions reach the workers together.

With user code in sandbox workers, a step that needs a transition waits for a worker.
Rather than one task and one call per instance, a round takes every instance whose next
work is a plain API event (the common case: send-event), groups them by org, and makes
one ``UserCode.transitions`` call per chunk of up to ``CHUNK`` of them: one frame to a
worker and one back. Once a chunk's answers are in, each of its instances runs that work
as it would have (``Steps.process``, limited to that one work), finding its transition's
result already there (``Entry.prefetched``) instead of calling the code; whatever else it
needs (a persistent child's creation) it still awaits. All other work (creations,
messages, timers, services' results, administrative changes) runs in a task per
instance. Chunks answer as the worker gets through them, so a round seals with every
chunk answered within ``ROUND_WAIT`` (see _processor).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, NamedTuple

from backstate.chart import Snapshot

from ._code import Step, TransitionCall
from ._deployments import Version, namespace_of
from ._entries import Entry, Work
from ._errors import BackstateError, Unavailable

if TYPE_CHECKING:
    from ._processor import Processor

logger = logging.getLogger("backstate.runtime")

CHUNK = 64  # transitions per call to a worker
CHUNK_TEXT = 1 << 20  # characters of snapshot text per call, about


class Prefetched(NamedTuple):
    """A transition made for ``work`` from ``snapshot`` with ``version``: used by the
    step only if all three are still the entry's."""

    work: Work
    snapshot: Snapshot
    version: Version
    result: Step | BackstateError


Chunk = list[tuple[Entry, Work, TransitionCall]]


class Batches:
    def __init__(self, processor: Processor) -> None:
        self.p = processor

    def start(self, entries: list[Entry]) -> list[asyncio.Task[None]]:
        """The round's steps, started: a task per chunk of instances whose next work is
        an API event, one per other instance."""
        tasks: list[asyncio.Task[None]] = []
        groups: dict[str | None, Chunk] = {}
        for entry in entries:
            call = self._call(entry)
            if call is None:
                tasks.append(self.p.run(entry))
            else:
                groups.setdefault(namespace_of(entry.key[0]), []).append(call)
        for group in groups.values():
            chunk: Chunk = []
            text = 0
            for item in group:
                chunk.append(item)
                text += len(item[2].snapshot.json_text or "")
                if len(chunk) == CHUNK or text >= CHUNK_TEXT:
                    tasks.append(self._start(chunk))
                    chunk, text = [], 0
            if chunk:
                tasks.append(self._start(chunk))
        return tasks

    def _call(self, entry: Entry) -> tuple[Entry, Work, TransitionCall] | None:
        """The transition the entry's next work needs, if it is a plain API event."""
        if not entry.queue or not entry.exists or entry.paused or entry.desired is not None:
            return None
        work = entry.queue[0]
        if work.kind != "api" or work.due is not None or entry.snapshot is None:
            return None
        try:
            version = self.p.registry.get(entry.key[0], entry.version)
        except BackstateError:
            return None  # the step itself says why
        check = self.p.steps.write_check(work)
        return entry, work, TransitionCall(version, entry.key[1], entry.snapshot, work.event, check)

    def _start(self, chunk: Chunk) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._run(chunk))
        for entry, _, _ in chunk:
            entry.busy = True
            self.p.running[entry.key] = task
        return task

    async def _run(self, chunk: Chunk) -> None:
        p = self.p
        begun = 0
        try:
            p.stats.batches += 1
            p.stats.batched += len(chunk)
            results = await p.code.transitions([call for _, _, call in chunk])
            for (entry, work, call), result in zip(chunk, results, strict=True):
                begun += 1
                entry.prefetched = Prefetched(work, call.snapshot, call.version, result)
                try:
                    await p.process(entry, limit=1)
                finally:
                    entry.prefetched = None
        except asyncio.CancelledError as stopped:
            # As a step stopped while it waits for code (see Steps.process): the work
            # each instance was to run now is refused, nothing of it written.
            code = str(stopped.args[0]) if stopped.args else "shutting-down"
            self._refuse(chunk[begun:], Unavailable(code, "the step was stopped; retry"))
            raise
        except Exception as exc:  # a bug of ours: only this chunk's work fails
            logger.exception("%d transitions in a batch failed", len(chunk) - begun)
            error = BackstateError("internal-error", f"internal error: {type(exc).__name__}")
            self._refuse(chunk[begun:], error)
        finally:
            for entry, _, _ in chunk[begun:]:
                p.release(entry)

    def _refuse(self, chunk: Chunk, error: BackstateError) -> None:
        """The work each instance of ``chunk`` was to run now is refused, unwritten."""
        for entry, work, _ in chunk:
            if entry.queue and entry.queue[0] is work:
                entry.queue.popleft()
                self.p.reject(work, error)
