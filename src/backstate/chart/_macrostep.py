"""One macrostep: an external event, then eventless transitions and raised events until
the configuration is stable (XState v5 ``macrostep``)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from ._actions import Action, as_fn3
from ._algorithm import eventless, plan, selection
from ._effects import Effect, ScheduleEvent, SendEvent, StartActor, StopActor
from ._errors import ExecutionError

if TYPE_CHECKING:
    from ._configuration import Configuration
    from ._implementations import Implementations
    from ._machine import Machine
    from ._nodes import StateNode, Transition

_HISTORY_DEPENDENT = object()
MAX_MICROSTEPS = 10_000


class Run:
    """The mutable working state of one macrostep."""

    __slots__ = (
        "children",
        "config",
        "context",
        "effects",
        "error",
        "event",
        "history",
        "impls",
        "machine",
        "output",
        "path",
        "queue",
        "status",
        "unhandled",
        "unstarted",
    )

    def __init__(
        self,
        machine: Machine,
        config: Configuration,
        context: Any,
        history: dict[str, tuple[str, ...]],
        children: dict[str, dict[str, Any]],
        event: dict[str, Any],
    ) -> None:
        self.machine = machine
        self.impls: Implementations = machine.implementations
        self.config = config
        self.context = context
        self.history = history
        self.children = children
        self.event = event
        self.queue: deque[dict[str, Any]] = deque()
        self.effects: list[Effect] = []
        self.status = "active"
        self.output: Any = None
        self.error: Any = None
        self.path = ""
        # Actors started in this macrostep: their starts only take effect once it ends.
        self.unstarted: dict[str, StartActor] = {}
        # The external event selected no transition (``_unhandled`` says why).
        self.unhandled = False

    def execute(self, action: Action) -> None:
        action.execute(self)

    def resolve_delay(self, spec: Any, params: Any) -> int | None:
        if spec is None:
            return None
        if isinstance(spec, str):
            if spec.isdigit():
                return int(spec)
            spec = self.impls.delay(spec, self.path)
        if callable(spec):
            spec = as_fn3(spec)(self.context, self.event, params)
        if not isinstance(spec, int | float) or isinstance(spec, bool) or spec < 0:
            raise ExecutionError(
                "action-failed", self.path, f"a delay must be a number of ms, got {spec!r}"
            )
        return int(spec)

    def resolve_output(self, spec: Any, event: dict[str, Any] | None = None) -> Any:
        if callable(spec):
            return as_fn3(spec)(self.context, event if event is not None else self.event, None)
        return spec

    def start_child(
        self,
        id: str,
        src: str,
        logic: Any,
        input: Any,
        system_id: str | None,
        kind: Any,
        retry: dict[str, Any] | None = None,
        timeout_ms: int | None = None,
    ) -> None:
        self.children = {**self.children, id: {"src": src, "kind": kind}}
        start = StartActor(id, src, input, system_id, kind, logic, retry, timeout_ms)
        self.unstarted[id] = start
        self.effects.append(start)

    def stop_child(self, id: str) -> None:
        if id not in self.children:
            return
        self.children = {k: v for k, v in self.children.items() if k != id}
        start = self.unstarted.pop(id, None)
        if start is None:
            self.effects.append(StopActor(id))
            return
        # Stopped in the macrostep that started it: as in XState (which defers starts to
        # the end of the macrostep and skips actors stopped by then) the actor never
        # runs, so neither its start nor anything sent to it takes effect. Sends to it
        # since the last start or stop of that id before this start awaited this start.
        effects = self.effects
        first = len(effects) - 1
        while effects[first] is not start:
            first -= 1
        while first > 0 and not _starts_or_stops(effects[first - 1], id):
            first -= 1
        effects[first:] = [
            e
            for e in effects[first:]
            if e is not start and not (isinstance(e, SendEvent | ScheduleEvent) and e.to == id)
        ]

    def finish(self, completion: StateNode) -> None:
        self.status = "done"
        root = self.machine.root
        if root.output is None:
            return
        done_event: dict[str, Any] = {"type": f"xstate.done.state.{completion.id}"}
        if completion.parent is not None and completion.output is not None:
            done_event["output"] = self.resolve_output(completion.output)
        self.output = self.resolve_output(root.output, done_event)

    # -- the loop -----------------------------------------------------------------------

    def apply(self, transitions: list[Transition] | tuple[Transition, ...]) -> bool:
        """Run one microstep; whether it changed anything observable."""
        if not transitions:
            return False
        config = self.config
        key = transitions if isinstance(transitions, tuple) else tuple(transitions)
        found = config.plans.get(key)
        if found is _HISTORY_DEPENDENT:
            hkey = (key, tuple(sorted(self.history.items())))
            found = config.plans.get(hkey)
            if found is None:
                found = config.plans[hkey] = self._plan(key)
        elif found is None:
            found = self._plan(key)
            if found.used_history:
                config.plans[key] = _HISTORY_DEPENDENT
                config.plans[(key, tuple(sorted(self.history.items())))] = found
            else:
                config.plans[key] = found
        context, children, history = self.context, self.children, self.history
        if found.history_updates:
            self.history = {**history, **dict(found.history_updates)}
        for action in found.steps:
            action.execute(self)
        self.config = found.target
        # Identity, not equality: every assign makes a new context, as in XState.
        return (
            found.target is not config
            or self.context is not context
            or self.children is not children
            or self.history is not history
        )

    def _plan(self, transitions: tuple[Transition, ...]) -> Any:
        return plan(transitions, self.config, self.history, self.machine.configurations)

    def run(self, event: dict[str, Any]) -> None:
        etype = event["type"]
        if etype.startswith(("xstate.done.actor.", "xstate.error.actor.")):
            child = etype.split(".", 3)[3]
            if child in self.children:
                self.children = {k: v for k, v in self.children.items() if k != child}
        transitions = selection(self.config, etype).select(self)
        if not transitions and etype.startswith("xstate.error.actor."):
            self.status = "error"
            self.error = event.get("error")
        elif transitions:
            self.apply(transitions)
        else:
            self.unhandled = True
        self.settle()

    def settle(self) -> None:
        select_eventless = True
        budget = MAX_MICROSTEPS
        while self.status == "active":
            budget -= 1
            if budget < 0:
                raise ExecutionError(
                    "infinite-loop",
                    self.path,
                    f"no stable configuration after {MAX_MICROSTEPS} microsteps",
                )
            enabled = eventless(self.config, self.history, self) if select_eventless else []
            if enabled:
                select_eventless = self.apply(enabled)
                continue
            if not self.queue:
                break
            self.event = self.queue.popleft()
            self.apply(selection(self.config, self.event["type"]).select(self))
            select_eventless = True
        if self.status != "active":
            for child in list(self.children):
                self.stop_child(child)


def _starts_or_stops(effect: Effect, id: str) -> bool:
    return isinstance(effect, StartActor | StopActor) and effect.id == id
