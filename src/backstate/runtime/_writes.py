"""What a transition writes besides its snapshot: its effects (custom actions and
services to run after commit, timers, messages, persistent children, emitted events,
log lines), its report to a parent, and its index entries. All of it happens inside a
step's section (see _steps)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from backstate.chart import (
    CancelEvent,
    EmitEvent,
    LogMessage,
    RunAction,
    ScheduleEvent,
    SendEvent,
    StartActor,
    StopActor,
)
from backstate.store import DeadLetterRow, EffectRow, InboxRow, InstanceKey, LogRow, TimerRow

from ._code import RefusedChild
from ._deployments import Persistent, Version, address, parse_ref
from ._entries import Entry, Round, Work
from ._errors import BackstateError, InvalidRequest
from ._indexes import IndexEntry
from ._retries import initial

if TYPE_CHECKING:
    from ._steps import Prepared, Steps


class EffectWrites:
    def __init__(self, steps: Steps) -> None:
        self.steps = steps
        self.p = steps.p

    def effect(
        self,
        entry: Entry,
        version: Version,
        effect: Any,
        effect_id: str,
        rnd: Round,
        now: int,
        children: dict[str, Prepared],
    ) -> None:
        key = entry.key
        p = self.p
        if isinstance(effect, RunAction):
            rnd.batch.effect_inserts.append(
                EffectRow(effect_id, key[0], key[1], "action", effect.name, None)
            )
            rnd.after.append(lambda: p.effects.run_action(entry, version, effect, effect_id))
        elif isinstance(effect, ScheduleEvent):
            timer = effect.id if effect.id is not None else f"auto:{effect_id}"
            due = now + effect.delay_ms
            rnd.batch.timer_ops.append(
                TimerRow(key[0], key[1], timer, effect.event, due, effect.to, 0)
            )
            # The wheel is in-memory state like the snapshot: it changes at once, so a
            # later event of this batch sees the timer replaced (a failed commit resets it).
            p.wheel.add(key, timer, due, effect.event, effect.to)
        elif isinstance(effect, CancelEvent):
            rnd.batch.timer_ops.append((key, effect.id))
            p.wheel.cancel(key, effect.id)
        elif isinstance(effect, SendEvent):
            self.send(entry, effect.to, effect.event, rnd, now)
        elif isinstance(effect, StartActor):
            self.start_actor(entry, effect, effect_id, rnd, now, children.get(effect.id))
        elif isinstance(effect, StopActor):
            entry.children.pop(effect.id, None)
            # Stopped now, so a result it already queued is dropped even in this batch,
            # and finished in the same commit as the transition that stopped it.
            unstarted = entry.starting.pop(effect.id, None)
            if unstarted is not None:
                rnd.batch.effect_done.append(unstarted)
            stopped = entry.services.pop(effect.id, None)
            if stopped is not None:
                rnd.batch.effect_done.append(stopped.effect_id)
                task = stopped.task
                rnd.after.append(lambda: _cancel(task))
        elif isinstance(effect, EmitEvent):
            rnd.after.append(lambda: p.emit(key, effect.event))
        elif isinstance(effect, LogMessage):
            message = (
                effect.value
                if isinstance(effect.value, str)
                else json.dumps(effect.value, default=str)
            )
            label = f"{effect.label}: " if effect.label else ""
            rnd.batch.logs.append(LogRow(now, key[0], version.id, key[1], "info", label + message))

    def send(self, entry: Entry, to: str, event: dict[str, Any], rnd: Round, now: int) -> None:
        sender = f"{entry.key[0]}/{entry.key[1]}"
        target: InstanceKey | None
        if to == "#_self":
            target, sender = entry.key, "self"
            rnd.self_sent.add(entry.key)
        elif to == "#_parent":
            target = entry.parent
        else:
            target = entry.children.get(to)
            ref = parse_ref(to) if target is None else None
            if ref is not None:
                try:
                    target = address(ref[0], ref[1], entry.key[0])
                except InvalidRequest as exc:
                    self.refuse_effect(entry, f"send_to({to!r})", exc, rnd, now)
                    return
        if target is None:
            rnd.batch.dead_letters.append(
                DeadLetterRow(
                    0, entry.key[0], entry.key[1], event, sender, f"unknown-target: {to!r}", 0, now
                )
            )
            return
        rnd.batch.inbox_inserts.append(InboxRow(0, target[0], target[1], event, sender, 1, 0, now))
        rnd.deliveries.append((target, Work("inbox", event, sender=sender)))

    def report_to_parent(
        self, entry: Entry, status: str, output: Any, error: Any, rnd: Round, now: int
    ) -> None:
        parent = self.p.entry(entry.parent) if entry.parent else None
        child_id = next(
            (cid for cid, k in (parent.children.items() if parent else []) if k == entry.key), None
        )
        if child_id is None:
            return
        if status == "done":
            event = {"type": f"xstate.done.actor.{child_id}", "output": output}
        else:
            event = {"type": f"xstate.error.actor.{child_id}", "error": error}
        self.send(entry, "#_parent", event, rnd, now)

    def start_actor(
        self,
        entry: Entry,
        effect: StartActor,
        effect_id: str,
        rnd: Round,
        now: int,
        prepared: Prepared | None,
    ) -> None:
        logic = effect.logic
        if isinstance(logic, Persistent):
            assert prepared is not None
            if prepared.error is not None:
                exc = prepared.error
                self.refuse_effect(entry, f"persistent({logic.machine!r})", exc, rnd, now)
                self.actor_failed(entry, effect.id, exc.code, exc.message, rnd, now)
                return
            entry.children[effect.id] = prepared.key
            if prepared.entry is None or prepared.entry.exists:
                return
            assert prepared.version is not None and prepared.step is not None
            opts = {"input": effect.input, "parent": entry.key}
            self.steps.commit_creation(
                prepared.entry, prepared.version, opts, prepared.step, rnd, now, prepared.children
            )
            return
        if isinstance(logic, RefusedChild):
            error = InvalidRequest(logic.code, logic.message)
            self.refuse_effect(entry, f"actor {effect.src!r}", error, rnd, now)
            self.actor_failed(entry, effect.id, logic.code, logic.message, rnd, now)
            return
        if logic is None:
            message = f"actor {effect.src!r} cannot run in the durable runtime"
            self.actor_failed(entry, effect.id, "unsupported-actor", message, rnd, now)
            return
        rnd.batch.effect_inserts.append(
            EffectRow(
                effect_id,
                entry.key[0],
                entry.key[1],
                "service",
                effect.src,
                effect.id,
                initial(effect),
            )
        )
        entry.starting[effect.id] = effect_id
        p = self.p
        version = p.registry.get(entry.key[0], entry.version)
        rnd.after.append(lambda: p.effects.start_service(entry, version, effect, effect_id))

    def refuse_effect(
        self, entry: Entry, what: str, exc: BackstateError, rnd: Round, now: int
    ) -> None:
        """An effect that must not happen (an address outside the sender's org, an
        invalid one) is dropped where it was produced, with a line in the sender's logs."""
        self.p.stats.refused[exc.code] += 1
        rnd.batch.logs.append(
            LogRow(
                now,
                entry.key[0],
                entry.version,
                entry.key[1],
                "error",
                f"{what} refused: {exc.message} ({exc.code})",
            )
        )

    def actor_failed(
        self, entry: Entry, child: str, name: str, message: str, rnd: Round, now: int
    ) -> None:
        """The instance learns (through its own inbox) that an actor could not start."""
        event = {"type": f"xstate.error.actor.{child}", "error": {"name": name, "message": message}}
        self.send(entry, "#_self", event, rnd, now)

    def index(
        self,
        entry: Entry,
        version: Version,
        indexed: tuple[frozenset[IndexEntry], list[str]],
        rnd: Round,
        now: int,
    ) -> None:
        """Rewrite the instance's index entries, in this transition's commit, if they
        changed; values that cannot be indexed are skipped and logged."""
        entries, skipped = indexed
        if entries == entry.indexed:
            return
        entry.indexed = entries
        rnd.batch.index_puts.append((entry.key, entries))
        for message in skipped:
            rnd.batch.logs.append(
                LogRow(now, entry.key[0], version.id, entry.key[1], "warning", message)
            )


def _cancel(task: Any) -> None:
    task.cancel()
