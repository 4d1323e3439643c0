"""Retried services: an invoke with ``retry: {attempts, ...}`` (chart/_policies) is run
again after a failed attempt, waiting on a durable timer, until an attempt succeeds or
the last one fails; only then does the instance get its ``onError`` event, with every
attempt's error in ``error.attempts``.

What makes it durable: the service's effect row carries its attempts (``EffectRow.retry``:
the attempt running or next, the errors so far, whether it is waiting, and what is needed
to start it again: its src, input and policy). A failed attempt is recorded, with the
timer of the next one (``retry:<effect id>``), in one commit; that timer firing marks the
next attempt running, in one commit, before it starts. So after a crash an attempt that
was waiting waits on (its timer fires as any timer does), and one that was running is
never run again: it counts as failed (``Interrupted``) and the next is scheduled, or, if
it was the last, the instance gets its error event. While a service waits for a retry it
is still running as far as its instance is concerned (a request waits for it to settle;
leaving the invoking state stops it, and its timer is then dropped when it fires).
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

from backstate.chart import StartActor
from backstate.store import EffectRow, InstanceKey, TimerRow, WriteBatch

from ._entries import Entry, Round, Service, Work
from ._errors import NotFound

if TYPE_CHECKING:
    from ._processor import Processor

RETRY_EVENT = "backstate.retry"


def initial(effect: StartActor) -> dict[str, Any] | None:
    """What a retried service's effect row holds when its first attempt starts."""
    if effect.retry is None:
        return None
    return {
        "attempt": 1,
        "errors": [],
        "waiting": False,
        "policy": effect.retry,
        "src": effect.src,
        "input": effect.input,
        "systemId": effect.system_id,
        "timeoutMs": effect.timeout_ms,
    }


def delay_ms(policy: dict[str, Any], failed: int) -> int:
    """The wait after attempt ``failed``: exponential, capped, less a random share."""
    base = min(policy["max_ms"], policy["initial_ms"] * policy["factor"] ** (failed - 1))
    return int(base * (1 - policy["jitter"] * random.random()))


def timer_key(effect_id: str) -> str:
    return f"retry:{effect_id}"


class Retries:
    def __init__(self, processor: Processor) -> None:
        self.p = processor
        # Recovered retried services of versions not deployed yet, by effect id.
        self.dormant: dict[str, EffectRow] = {}

    def retrying(self, entry: Entry, work: Work) -> Service | None:
        """The service whose failed attempt ``work`` reports, if it has attempts left;
        else None (and a retried service's error event gets every attempt's error)."""
        if not work.event["type"].startswith("xstate.error.actor."):
            return None
        child = work.event["type"].split(".", 3)[3]
        service = entry.services.get(child)
        if service is None or service.retry is None or service.token is not work.token:
            return None
        retry = service.retry
        errors = [*retry["errors"], {"attempt": retry["attempt"], **work.event.get("error", {})}]
        if retry["attempt"] < retry["policy"]["attempts"]:
            return service
        work.event = {**work.event, "error": {**work.event.get("error", {}), "attempts": errors}}
        return None

    def schedule(self, entry: Entry, service: Service, work: Work, rnd: Round, now: int) -> None:
        """Record the failed attempt and the timer of the next one."""
        assert service.retry is not None
        retry = service.retry
        error = {"attempt": retry["attempt"], **work.event.get("error", {})}
        service.retry = self._next(entry.key, service.effect_id, retry, error, rnd.batch, now)

    def _next(
        self,
        key: InstanceKey,
        effect_id: str,
        retry: dict[str, Any],
        error: dict[str, Any],
        batch: WriteBatch,
        now: int,
    ) -> dict[str, Any]:
        state = {
            **retry,
            "attempt": retry["attempt"] + 1,
            "errors": [*retry["errors"], error],
            "waiting": True,
        }
        batch.effect_retries.append((effect_id, state))
        due = now + delay_ms(retry["policy"], retry["attempt"])
        event = {"type": RETRY_EVENT, "effectId": effect_id}
        batch.timer_ops.append(
            TimerRow(key[0], key[1], timer_key(effect_id), event, due, "#_self", 0)
        )
        self.p.wheel.add(key, timer_key(effect_id), due, event, "#_self")
        return state

    def fire(self, entry: Entry, work: Work, rnd: Round) -> None:
        """A retry's timer fired: its attempt is marked running, and starts once that is
        committed. Dropped if the service was stopped meanwhile."""
        effect_id = work.event.get("effectId")
        dormant = self.dormant.pop(effect_id, None) if isinstance(effect_id, str) else None
        if dormant is not None:
            self._revive(dormant)
        found = [
            (child, service)
            for child, service in entry.services.items()
            if service.effect_id == effect_id and service.retry is not None
        ]
        if not found:
            return
        child, service = found[0]
        assert service.retry is not None
        retry = service.retry = {**service.retry, "waiting": False}
        rnd.batch.effect_retries.append((service.effect_id, retry))
        p = self.p
        rnd.after.append(lambda: p.effects.attempt(entry, child, service))

    def recover(self, eff: EffectRow, batch: WriteBatch, now: int) -> bool:
        """At start: a retried service whose instance still runs it waits on for its
        next attempt, or, if one was running, that attempt failed and the next is
        scheduled. False if it has no attempts left (it gets its error event)."""
        retry = eff.retry
        assert retry is not None
        if not retry["waiting"]:
            if retry["attempt"] >= retry["policy"]["attempts"]:
                return False
            error = {
                "attempt": retry["attempt"],
                "name": "Interrupted",
                "message": "the process stopped while this attempt ran",
            }
            eff.retry = self._next((eff.machine, eff.instance), eff.id, retry, error, batch, now)
        if not self._revive(eff):
            self.dormant[eff.id] = eff  # its version is not deployed yet: when it fires
        return True

    def _revive(self, eff: EffectRow) -> bool:
        """Make a recovered retried service its instance's again (as it waits for its
        timer); False while its version is not deployed."""
        retry = eff.retry
        assert retry is not None and eff.child is not None
        try:
            entry = self.p.entry((eff.machine, eff.instance))
            if entry is None:
                return True  # deleted: its timer went with it
            version = self.p.registry.get(eff.machine, entry.version)
        except NotFound:
            return False
        logic = version.machine.implementations.actors.get(retry["src"])
        start = StartActor(
            eff.child,
            retry["src"],
            retry["input"],
            retry["systemId"],
            "invoke",
            logic,
            retry["policy"],
            retry["timeoutMs"],
        )
        # A service always has a task: while it waits, a finished one.
        task = asyncio.get_running_loop().create_task(asyncio.sleep(0))
        entry.services[eff.child] = Service(task, eff.id, object(), start, version, retry)
        return True

    def final_error(self, eff: EffectRow, error: dict[str, Any]) -> dict[str, Any]:
        """The error event's error after the last attempt was interrupted."""
        retry = eff.retry
        if retry is None:
            return error
        attempts = [*retry["errors"], {"attempt": retry["attempt"], **error}]
        return {**error, "attempts": attempts}
