"""Run machines in memory with a simulated clock, for users' tests and ours.

``Actor(machine)`` starts a machine and carries out its effects at once: custom actions
run after each macrostep, delayed events wait for ``advance(ms)``, invoked callables run
to completion (async ones on a private event loop), and child machines run as actors of
their own that share the clock. Nothing here touches a store or the real clock.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from backstate.chart import (
    CancelEvent,
    Effect,
    EmitEvent,
    ExecutionError,
    LogMessage,
    Machine,
    RunAction,
    ScheduleEvent,
    SendEvent,
    Snapshot,
    StartActor,
    StopActor,
    to_event,
)

__all__ = ["Actor", "SimulatedClock", "error_payload"]


class SimulatedClock:
    """Milliseconds since the start of the test; moves only when told to."""

    def __init__(self, now_ms: int = 0) -> None:
        self.now_ms = now_ms


@dataclass
class _Timer:
    due: int
    seq: int
    actor: Actor
    id: str | None
    event: dict[str, Any]
    to: str


class _System:
    """What an actor tree shares: the clock and the pending delayed events."""

    def __init__(self, clock: SimulatedClock) -> None:
        self.clock = clock
        self.timers: list[_Timer] = []
        self.seq = itertools.count()


def error_payload(exc: BaseException) -> dict[str, str]:
    """The JSON form of an exception carried by ``xstate.error.actor.*`` events."""
    return {"name": type(exc).__name__, "message": str(exc)}


class Actor:
    def __init__(
        self,
        machine: Machine,
        *,
        input: Any = None,
        clock: SimulatedClock | None = None,
        id: str = "root",
        parent: Actor | None = None,
        _system: _System | None = None,
        _snapshot: Snapshot | None = None,
    ) -> None:
        self.machine = machine
        self.id = id
        self.parent = parent
        self._system = _system or _System(clock or SimulatedClock())
        self.children: dict[str, Any] = {}
        self.emitted: list[dict[str, Any]] = []
        self.logs: list[tuple[str | None, Any]] = []
        self.listeners: list[Callable[[Snapshot], None]] = []
        # Each event with, if it is a child's result, (that child's id, that child).
        self._inbox: deque[tuple[dict[str, Any], tuple[str, object] | None]] = deque()
        self._busy = False
        self._started = False
        self.stopped = False
        if _snapshot is not None:
            self.snapshot = _snapshot
        else:
            self.snapshot, effects = machine.initial_transition(input)
            self._busy = True
            try:
                self._carry_out(effects)
            finally:
                self._busy = False
            self._drain()
        self._started = True

    @property
    def clock(self) -> SimulatedClock:
        return self._system.clock

    # -- sending and time ------------------------------------------------------------------

    def send(self, event: Any) -> Snapshot:
        self._inbox.append((to_event(event), None))
        self._drain()
        return self.snapshot

    def advance(self, ms: int) -> Snapshot:
        """Move the clock forward, firing due delayed events in time order."""
        system = self._system
        until = system.clock.now_ms + ms
        while True:
            due = [t for t in system.timers if t.due <= until]
            if not due:
                break
            timer = min(due, key=lambda t: (t.due, t.seq))
            system.timers.remove(timer)
            system.clock.now_ms = max(system.clock.now_ms, timer.due)
            timer.actor._deliver(timer.to, timer.event)
        system.clock.now_ms = until
        return self.snapshot

    def stop(self) -> None:
        self.stopped = True
        self._cancel_timers()
        for child in list(self.children.values()):
            if isinstance(child, Actor):
                child.stop()
        self.children.clear()

    # -- persistence ---------------------------------------------------------------------

    def persist(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot.to_json(),
            "now": self.clock.now_ms,
            "timers": [
                {"due": t.due, "id": t.id, "event": t.event, "to": t.to}
                for t in sorted(self._system.timers, key=lambda t: (t.due, t.seq))
                if t.actor is self
            ],
            "children": {k: c.persist() for k, c in self.children.items() if isinstance(c, Actor)},
        }

    @classmethod
    def restore(cls, machine: Machine, data: Mapping[str, Any], **kwargs: Any) -> Actor:
        system = kwargs.pop("_system", None) or _System(SimulatedClock(int(data.get("now", 0))))
        actor = cls(
            machine, _system=system, _snapshot=machine.resolve_snapshot(data["snapshot"]), **kwargs
        )
        for t in data.get("timers", []):
            system.timers.append(
                _Timer(t["due"], next(system.seq), actor, t["id"], t["event"], t["to"])
            )
        for child_id, child_data in (data.get("children") or {}).items():
            src = actor.snapshot.children.get(child_id, {}).get("src")
            logic = machine.implementations.actors.get(src) if src else None
            if isinstance(logic, Machine):
                actor.children[child_id] = cls.restore(
                    logic, child_data, id=child_id, parent=actor, _system=system
                )
        return actor

    # -- internals -------------------------------------------------------------------------

    def _drain(self) -> None:
        if self._busy:
            return
        self._busy = True
        try:
            while self._inbox:
                event, result_of = self._inbox.popleft()
                if self.stopped or self.snapshot.status != "active":
                    continue
                if result_of is not None:
                    child_id, child = result_of
                    held = self.children.get(child_id)
                    if held is child:
                        del self.children[child_id]
                    elif held is not None:
                        # The machine would read it as the result of the invocation
                        # that has replaced this one under the same id.
                        continue
                    # Otherwise the child was stopped after its result was queued; as in
                    # XState and SCXML, events already queued are still processed.
                self.snapshot, effects = self.machine.transition(self.snapshot, event)
                self._carry_out(effects)
        finally:
            self._busy = False

    def _carry_out(self, effects: list[Effect]) -> None:
        # As in XState, a child started later in the same batch receives what was
        # sent to it earlier in the batch, once it has started.
        later = {e.id for e in effects if isinstance(e, StartActor)}
        waiting: dict[str, list[dict[str, Any]]] = {}
        for effect in effects:
            if (
                isinstance(effect, SendEvent)
                and effect.to in later
                and effect.to not in self.children
            ):
                waiting.setdefault(effect.to, []).append(effect.event)
                continue
            if isinstance(effect, RunAction):
                effect.run()
            elif isinstance(effect, ScheduleEvent):
                system = self._system
                due = system.clock.now_ms + effect.delay_ms
                system.timers.append(
                    _Timer(due, next(system.seq), self, effect.id, effect.event, effect.to)
                )
            elif isinstance(effect, CancelEvent):
                self._system.timers = [
                    t for t in self._system.timers if not (t.actor is self and t.id == effect.id)
                ]
            elif isinstance(effect, SendEvent):
                self._deliver(effect.to, effect.event)
            elif isinstance(effect, EmitEvent):
                self.emitted.append(effect.event)
            elif isinstance(effect, LogMessage):
                self.logs.append((effect.label, effect.value))
            elif isinstance(effect, StartActor):
                self._start_child(effect)
                for event in waiting.pop(effect.id, []):
                    self._deliver(effect.id, event)
            elif isinstance(effect, StopActor):
                self._system.timers = [
                    t for t in self._system.timers if not (t.actor is self and t.to == effect.id)
                ]
                child = self.children.pop(effect.id, None)
                if isinstance(child, Actor):
                    child.stop()
        if self.snapshot.status != "active":
            # A finished actor sends nothing more, not even what it scheduled (XState
            # cancels a done actor's delayed events; SCXML, W3C test 187).
            self._cancel_timers()
        for listener in self.listeners:
            listener(self.snapshot)
        if (
            self._started
            and self.parent is not None
            and self.snapshot.status in ("done", "error")
            and not self.stopped
        ):
            self._report_to_parent()

    def _report_to_parent(self) -> None:
        parent = self.parent
        assert parent is not None
        if self.snapshot.status == "done":
            event = {
                "type": f"xstate.done.actor.{self.id}",
                "output": self.snapshot.output,
                "actorId": self.id,
            }
        else:
            event = {
                "type": f"xstate.error.actor.{self.id}",
                "error": self.snapshot.error,
                "actorId": self.id,
            }
        self.stopped = True
        parent._inbox.append((event, (self.id, self)))
        parent._drain()

    def _cancel_timers(self) -> None:
        self._system.timers = [t for t in self._system.timers if t.actor is not self]

    def _deliver(self, to: str, event: dict[str, Any]) -> None:
        if to == "#_self":
            self._inbox.append((event, None))
            self._drain()
        elif to == "#_parent":
            if self.parent is None:
                raise ExecutionError(
                    "unknown-child", "", f"{self.id!r} has no parent to send {event['type']!r} to"
                )
            self.parent._inbox.append((event, None))
            self.parent._drain()
        else:
            child = self.children.get(to)
            if not isinstance(child, Actor):
                raise ExecutionError(
                    "unknown-child", "", f"no child actor {to!r} to send {event['type']!r} to"
                )
            child.send(event)

    def _start_child(self, effect: StartActor) -> None:
        logic = effect.logic
        if isinstance(logic, Machine):
            child = Actor(
                logic, input=effect.input, id=effect.id, parent=self, _system=self._system
            )
            self.children[effect.id] = child
            if child.snapshot.status in ("done", "error") and not child.stopped:
                child._report_to_parent()
            return
        token = object()
        self.children[effect.id] = token
        try:
            result = logic(effect.input) if callable(logic) else logic
            if inspect.isawaitable(result):
                result = _run_coroutine(result)
            event = {
                "type": f"xstate.done.actor.{effect.id}",
                "output": result,
                "actorId": effect.id,
            }
        except Exception as exc:
            event = {
                "type": f"xstate.error.actor.{effect.id}",
                "error": error_payload(exc),
                "actorId": effect.id,
            }
        self._inbox.append((event, (effect.id, token)))


def _run_coroutine(awaitable: Any) -> Any:
    async def wrap() -> Any:
        return await awaitable

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(wrap())
    finally:
        loop.close()
