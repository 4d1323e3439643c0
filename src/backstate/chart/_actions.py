"""Compiled actions and guards, and how each one executes inside a macrostep.

A config refers to actions and guards by name, as ``{"type": name, "params": ...}``,
inline as callables, or as built-in dicts (``_builtins``). ``Implementations.action``
and ``.guard`` turn each reference into one of the classes below, once, when the
machine is created. Built-ins are pure and run inside the transition; a custom action
becomes a ``RunAction`` effect carrying the context and event of the moment it was
reached.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._effects import (
    CancelEvent,
    EmitEvent,
    LogMessage,
    RunAction,
    ScheduleEvent,
    SendEvent,
)
from ._errors import DefinitionError, ExecutionError

if TYPE_CHECKING:
    from ._macrostep import Run

Fn3 = Callable[[Any, Any, Any], Any]


@functools.lru_cache(maxsize=4096)
def takes_params(fn: Callable[..., Any], base: int = 2) -> bool:
    """Whether ``fn`` accepts a positional argument after its ``base`` ones."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    count = 0
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            return True
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            count += 1
    return count > base


def as_fn3(fn: Callable[..., Any]) -> Fn3:
    """Normalise a ``(context, event[, params])`` callable to three arguments."""
    if takes_params(fn):
        return fn
    return lambda c, e, p: fn(c, e)


def _value(spec: Any, run: Run, params: Any) -> Any:
    """A config value that may be a function of (context, event[, params])."""
    if callable(spec):
        return as_fn3(spec)(run.context, run.event, params)
    return spec


def _event(spec: Any, run: Run, params: Any) -> dict[str, Any]:
    value = _value(spec, run, params)
    if isinstance(value, str):
        return {"type": value}
    if not isinstance(value, Mapping) or not isinstance(value.get("type"), str):
        raise ExecutionError(
            "action-failed", run.path, f"an event needs a string 'type', got {value!r}"
        )
    return dict(value)


def _params(spec: Any, run: Run) -> Any:
    if callable(spec):
        return as_fn3(spec)(run.context, run.event, None)
    return spec


class Action:
    __slots__ = ("params",)

    def __init__(self) -> None:
        self.params: Any = None

    def execute(self, run: Run) -> None:
        raise NotImplementedError


class CustomAction(Action):
    __slots__ = ("fn", "name", "with_params")

    def __init__(self, name: str, fn: Callable[..., Any], params: Any) -> None:
        super().__init__()
        self.name = name
        self.fn = fn
        self.params = params
        self.with_params = takes_params(fn)

    def execute(self, run: Run) -> None:
        params = self.params
        if params is not None and callable(params):
            params = _params(params, run)
        run.effects.append(
            RunAction(self.name, params, run.context, run.event, self.fn, self.with_params)
        )


class AssignAction(Action):
    __slots__ = ("fn", "name", "props")

    def __init__(self, assignment: Any) -> None:
        super().__init__()
        self.name: str | None = None  # the name ``setup`` gave it, for its errors
        self.fn: Fn3 | None = None
        self.props: list[tuple[str, Any, bool]] = []
        if callable(assignment):
            self.fn = as_fn3(assignment)
        elif isinstance(assignment, Mapping):
            self.props = [
                (k, as_fn3(v) if callable(v) else v, callable(v)) for k, v in assignment.items()
            ]
        else:
            raise DefinitionError("invalid-config", "", "assign takes an object or a function")

    def execute(self, run: Run) -> None:
        context = run.context
        if not isinstance(context, dict):
            raise ExecutionError("invalid-context", run.path, "assign needs an object 'context'")
        params = _params(self.params, run) if self.params is not None else None
        if self.fn is not None:
            update = self.fn(context, run.event, params)
            if not isinstance(update, Mapping):
                raise ExecutionError(
                    "action-failed", run.path, f"an assigner must return an object, got {update!r}"
                )
        else:
            update = {
                k: (v(context, run.event, params) if is_fn else v) for k, v, is_fn in self.props
            }
        run.context = {**context, **update}


class RaiseAction(Action):
    __slots__ = ("delay", "event", "id")

    def __init__(self, event: Any, delay: Any = None, id: Any = None) -> None:
        super().__init__()
        self.event = event
        self.delay = delay
        self.id = id

    def execute(self, run: Run) -> None:
        params = _params(self.params, run) if self.params is not None else None
        event = _event(self.event, run, params)
        delay = run.resolve_delay(self.delay, params)
        if delay is None:
            run.queue.append(event)
        else:
            run.effects.append(ScheduleEvent(_value(self.id, run, params), event, delay, "#_self"))


class SendToAction(Action):
    __slots__ = ("delay", "event", "id", "to")

    def __init__(self, to: Any, event: Any, delay: Any = None, id: Any = None) -> None:
        super().__init__()
        self.to = to
        self.event = event
        self.delay = delay
        self.id = id

    def execute(self, run: Run) -> None:
        params = _params(self.params, run) if self.params is not None else None
        to = _value(self.to, run, params)
        if not isinstance(to, str):
            raise ExecutionError("action-failed", run.path, f"sendTo needs a target id, got {to!r}")
        event = _event(self.event, run, params)
        delay = run.resolve_delay(self.delay, params)
        if delay is None:
            run.effects.append(SendEvent(to, event))
        else:
            run.effects.append(ScheduleEvent(_value(self.id, run, params), event, delay, to))


class CancelAction(Action):
    __slots__ = ("send_id",)

    def __init__(self, send_id: Any) -> None:
        super().__init__()
        self.send_id = send_id

    def execute(self, run: Run) -> None:
        params = _params(self.params, run) if self.params is not None else None
        run.effects.append(CancelEvent(str(_value(self.send_id, run, params))))


class LogAction(Action):
    __slots__ = ("label", "value")

    def __init__(self, value: Any, label: str | None) -> None:
        super().__init__()
        self.value = value
        self.label = label

    def execute(self, run: Run) -> None:
        params = _params(self.params, run) if self.params is not None else None
        value = (
            {"context": run.context, "event": run.event}
            if self.value is None
            else _value(self.value, run, params)
        )
        run.effects.append(LogMessage(self.label, value))


class EmitAction(Action):
    __slots__ = ("event",)

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event

    def execute(self, run: Run) -> None:
        params = _params(self.params, run) if self.params is not None else None
        run.effects.append(EmitEvent(_event(self.event, run, params)))


class SpawnAction(Action):
    __slots__ = ("id", "input", "logic", "src", "system_id")

    def __init__(self, src: str, logic: Any, id: Any, input: Any, system_id: str | None) -> None:
        super().__init__()
        self.src = src
        self.logic = logic
        self.id = id
        self.input = input
        self.system_id = system_id

    def execute(self, run: Run) -> None:
        params = _params(self.params, run) if self.params is not None else None
        child_id = str(_value(self.id, run, params))
        run.start_child(
            child_id, self.src, self.logic, _value(self.input, run, params), self.system_id, "spawn"
        )


class StopChildAction(Action):
    __slots__ = ("id",)

    def __init__(self, id: Any) -> None:
        super().__init__()
        self.id = id

    def execute(self, run: Run) -> None:
        params = _params(self.params, run) if self.params is not None else None
        run.stop_child(str(_value(self.id, run, params)))


class StartInvoke(Action):
    """Entering a state starts its invokes (not written in configs)."""

    __slots__ = ("invoke",)

    def __init__(self, invoke: Any) -> None:
        super().__init__()
        self.invoke = invoke

    def execute(self, run: Run) -> None:
        inv = self.invoke
        run.start_child(
            inv.id,
            inv.src,
            inv.logic,
            _value(inv.input, run, None),
            inv.system_id,
            "invoke",
            inv.retry,
            inv.timeout_ms,
        )


class StopInvoke(Action):
    __slots__ = ("id",)

    def __init__(self, id: str) -> None:
        super().__init__()
        self.id = id

    def execute(self, run: Run) -> None:
        run.stop_child(self.id)


class Enqueue:
    """What ``enqueue_actions`` callbacks receive: call it with an action, or use the
    named shortcuts; ``check(guard)`` evaluates a guard now."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self.actions: list[Any] = []

    def __call__(self, action: Any) -> None:
        self.actions.append(action)

    def check(self, guard: Any) -> bool:
        compiled = self._run.impls.guard(guard, self._run.path)
        return compiled is None or compiled.test(self._run)

    def assign(self, assignment: Any) -> None:
        self.actions.append({"type": "xstate.assign", "assignment": assignment})

    def raise_(self, event: Any, delay: Any = None, id: str | None = None) -> None:
        from ._builtins import raise_

        self.actions.append(raise_(event, delay, id))

    def send_to(self, to: Any, event: Any, delay: Any = None, id: str | None = None) -> None:
        from ._builtins import send_to

        self.actions.append(send_to(to, event, delay, id))

    def send_parent(self, event: Any, delay: Any = None, id: str | None = None) -> None:
        self.send_to("#_parent", event, delay, id)

    def cancel(self, send_id: str) -> None:
        self.actions.append({"type": "xstate.cancel", "sendId": send_id})

    def emit(self, event: Any) -> None:
        self.actions.append({"type": "xstate.emit", "event": event})

    def log(self, value: Any = None, label: str | None = None) -> None:
        self.actions.append(LogAction(value, label))

    def spawn_child(self, src: str, id: str, input: Any = None) -> None:
        self.actions.append({"type": "xstate.spawnChild", "src": src, "id": id, "input": input})

    def stop_child(self, id: str) -> None:
        self.actions.append({"type": "xstate.stopChild", "id": id})


class EnqueueAction(Action):
    __slots__ = ("collect", "name", "with_params")

    def __init__(self, collect: Callable[..., Any]) -> None:
        super().__init__()
        self.name: str | None = None  # the name ``setup`` gave it, for its errors
        self.collect = collect
        self.with_params = takes_params(collect, 3)

    def execute(self, run: Run) -> None:
        params = _params(self.params, run) if self.params is not None else None
        enqueue = Enqueue(run)
        if self.with_params:
            self.collect(run.context, run.event, enqueue, params)
        else:
            self.collect(run.context, run.event, enqueue)
        for ref in enqueue.actions:
            action = ref if isinstance(ref, Action) else run.impls.action(ref, run.path)
            run.execute(action)


# -- guards ---------------------------------------------------------------------------


class Guard:
    __slots__ = ()

    def test(self, run: Run) -> bool:
        raise NotImplementedError


class CustomGuard(Guard):
    __slots__ = ("fn", "name", "params")

    def __init__(self, name: str, fn: Callable[..., Any], params: Any) -> None:
        self.name = name
        self.fn = as_fn3(fn)
        self.params = params

    def test(self, run: Run) -> bool:
        params = _params(self.params, run) if self.params is not None else None
        return bool(self.fn(run.context, run.event, params))


class AndGuard(Guard):
    __slots__ = ("guards",)

    def __init__(self, guards: list[Guard | None]) -> None:
        self.guards = guards

    def test(self, run: Run) -> bool:
        return all(g is None or g.test(run) for g in self.guards)


class OrGuard(AndGuard):
    def test(self, run: Run) -> bool:
        return any(g is None or g.test(run) for g in self.guards)


class NotGuard(Guard):
    __slots__ = ("guard",)

    def __init__(self, guard: Guard | None) -> None:
        self.guard = guard

    def test(self, run: Run) -> bool:
        return not (self.guard is None or self.guard.test(run))


class StateInGuard(Guard):
    __slots__ = ("state_value",)

    def __init__(self, state_value: Any) -> None:
        self.state_value = state_value

    def test(self, run: Run) -> bool:
        return run.config.in_state(self.state_value)
