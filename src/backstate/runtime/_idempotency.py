"""Idempotency keys: a request made again under the same key is answered, not applied.

The semantics are the IETF httpapi draft's (``draft-ietf-httpapi-idempotency-key-header``):
a create or an event carrying a key is applied once; the same key with the same request
(its ``fingerprint``, a digest of the request's JSON) within the retention window gets
the answer the first one got, without applying anything; with a different request it is
refused (422 ``idempotency-key-reused``); while the first is still being processed (not
yet answered), a repeat is refused with 409 ``idempotency-key-in-use`` and may be retried.

Why it holds: the key row is written in the same commit as the request's transition, so
no crash can apply a request and lose its key; and the check runs inside the instance's
step, where one instance's work runs one at a time, seeing its keys both in the store
and in what this process wrote but has not committed yet (``Entry.keys``). The answer is
a row of the instance's history (the state the caller got: the one right after the
transition if the instance was settled then, else the one it settled in, recorded once
known). Keys are scoped to the instance, whose machine name carries its org.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backstate.store import IdempotencyRow, InstanceKey, StoreError

from ._entries import Entry, InstanceState, Round, Work
from ._errors import Conflict, IdempotencyKeyReused, InvalidRequest, NotFound, Unavailable

if TYPE_CHECKING:
    from ._processor import Processor

logger = logging.getLogger("backstate.runtime")

RETENTION_S = 24 * 3600.0
MAX_KEY_LENGTH = 255
# Answered keys an instance keeps in memory (older ones are read from the store).
REMEMBERED = 32
SWEEP_INTERVAL_S = 3600.0


@dataclass(frozen=True, slots=True)
class Idempotency:
    """What a request under a key carries to its step."""

    key: str
    fingerprint: str


@dataclass(slots=True)
class Remembered:
    """A key this process applied (or read): its answer, once it has one."""

    fingerprint: str
    version: str
    seq: int
    created_at: int
    state: InstanceState | None  # None: applied, not answered yet


def idempotency(key: str | None, request: Any) -> Idempotency | None:
    """The key (checked; an RFC 8941 string's quotes removed) and the fingerprint of
    ``request`` (any JSON), or None without a key."""
    if key is None:
        return None
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(" " <= c <= "~" for c in key):
        raise InvalidRequest(
            "invalid-idempotency-key",
            f"an idempotency key is 1 to {MAX_KEY_LENGTH} printable ASCII characters",
        )
    text = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return Idempotency(key, hashlib.sha256(text.encode()).hexdigest())


class Keys:
    def __init__(self, processor: Processor, retention_s: float) -> None:
        self.p = processor
        self.retention_ms = int(retention_s * 1000)
        self._sweeper: asyncio.Task[None] | None = None

    def replayed(self, entry: Entry, work: Work, now: int) -> bool:
        """Whether ``work`` repeats a request already applied under its key (then it is
        answered, or refused, here); if not, its step applies it and calls ``record``."""
        idem = work.idempotency
        assert idem is not None
        known = entry.keys.get(idem.key)
        if known is None:
            if work.key_read:
                row = work.key_row  # read with the round's other keys (``prefetch``)
            else:
                try:
                    row = self.p.store.idempotency_key(entry.key, idem.key)
                except StoreError as exc:
                    raise Unavailable("store-unavailable", f"the store failed: {exc}") from exc
            if row is not None:
                known = Remembered(row.fingerprint, row.version, row.seq, row.created_at, None)
        if known is None or known.created_at < now - self.retention_ms:
            return False  # an expired key is a new one (its row is replaced)
        if known.state is None and idem.key not in entry.keys:
            known.state = self._recorded(entry, known)
        if known.fingerprint != idem.fingerprint:
            raise IdempotencyKeyReused(
                "idempotency-key-reused",
                f"idempotency key {idem.key!r} was used for a different request",
            )
        if known.state is None:
            raise Conflict(
                "idempotency-key-in-use",
                f"the request with idempotency key {idem.key!r} is still being processed; retry",
            )
        if work.future is not None and not work.future.done():
            work.future.set_result(known.state)
        return True

    async def prefetch(self, entries: list[Entry], per_entry: int) -> bool:
        """Read from the store, in one thread call, the keys that the round's first
        ``per_entry`` works of each entry carry and that are not in memory, and leave
        each row (or its absence) on its work. Steps run without suspending (trusted
        code runs them to the end at once), so a step cannot wait for a read; reading
        in the step instead would hold the event loop for a round trip to the store per
        key (with PostgreSQL, everything else waits). A key read absent stays absent
        until its step records it: only this instance's steps write its keys, in order.
        A failed read leaves the works unread: their steps read again, and say why.
        Whether it waited for the store (without keys to read, it returns at once)."""
        wanted: dict[tuple[InstanceKey, str], list[Work]] = {}
        for entry in entries:
            for work in itertools.islice(entry.queue, per_entry):
                idem = work.idempotency
                if idem is not None and not work.key_read and idem.key not in entry.keys:
                    wanted.setdefault((entry.key, idem.key), []).append(work)
        if not wanted:
            return False
        try:
            rows = await asyncio.to_thread(self.p.store.idempotency_keys, list(wanted))
        except StoreError as exc:
            logger.warning("could not read %d idempotency keys: %s", len(wanted), exc)
            return True
        for pair, works in wanted.items():
            for work in works:
                work.key_read, work.key_row = True, rows.get(pair)
        return True

    def record(self, entry: Entry, work: Work, state: InstanceState, rnd: Round, now: int) -> None:
        """Write ``work``'s key with its transition (``state``, in ``rnd``), and note the
        answer its caller gets once it has it."""
        idem = work.idempotency
        assert idem is not None and work.future is not None
        key = entry.key
        rnd.batch.idempotency_puts.append(
            IdempotencyRow(
                key[0], key[1], idem.key, idem.fingerprint, state.version, state.seq, now
            )
        )
        known = Remembered(idem.fingerprint, state.version, state.seq, now, None)
        entry.keys[idem.key] = known
        while len(entry.keys) > REMEMBERED:
            oldest = next(iter(entry.keys))
            if entry.keys[oldest].state is None:
                break  # never forget one not answered yet: a repeat must see it
            del entry.keys[oldest]
        work.future.add_done_callback(lambda f: self._answered(entry, idem.key, known, f))

    def _answered(
        self, entry: Entry, key: str, known: Remembered, future: asyncio.Future[InstanceState]
    ) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # refused after the commit (shutting down): a repeat after restart reads it
        state = future.result()
        known.state = state
        if (state.version, state.seq) != (known.version, known.seq):
            # Answered once settled, after later transitions: that is the answer to repeat.
            known.version, known.seq = state.version, state.seq
            self.p.round.batch.idempotency_answers.append(
                (entry.key, key, state.version, state.seq)
            )
            self.p.wake()

    def _recorded(self, entry: Entry, known: Remembered) -> InstanceState:
        """The state recorded as a key's answer, from the instance's history (or its
        latest state if that version is no longer deployed)."""
        try:
            rows = self.p.store.history(entry.key, known.seq - 1, 1)
            version = self.p.registry.get(entry.key[0], known.version)
        except StoreError as exc:
            raise Unavailable("store-unavailable", f"the store failed: {exc}") from exc
        except NotFound:
            rows = []
        if not rows or rows[0].seq != known.seq or entry.committed is None:
            assert entry.committed is not None, "a key outlives its instance only in a race"
            return entry.committed
        snap = version.machine.resolve_snapshot(rows[0].snapshot)
        current = entry.committed
        return InstanceState(
            entry.key[0],
            entry.key[1],
            known.version,
            known.seq,
            snap.value,
            snap.context,
            snap.status,
            current.paused,
            snap.tags,
            snap,
            rows[0].ts,
            current.created_at,
            current.desired_version,
        )

    # -- retention ----------------------------------------------------------------------------

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def _sweep(self) -> None:
        """Delete expired keys now and then (a lookup ignores them anyway, so this only
        keeps the table small)."""
        while True:
            try:
                before = self.p.clock.now_ms() - self.retention_ms
                await asyncio.to_thread(self.p.store.expire_idempotency_keys, before)
            except StoreError as exc:
                logger.warning("could not expire idempotency keys: %s", exc)
            await asyncio.sleep(SWEEP_INTERVAL_S)
