"""Effects as plain data between a worker and the server, and the references by which
a worker finds the function of a custom action or a service.

A worker turns the engine's effects into JSON; the server turns them back, checking
each field's type (what a worker sends is untrusted). Custom actions and services are
named by a reference: ``a:<name>`` / ``s:<name>`` for those given by name to
``setup(...)``, ``a#<n>`` / ``s#<n>`` for the n-th inline function of the machine's
state tree (in document order, the same in every worker that loads the same file).
"""

from __future__ import annotations

from typing import Any

from backstate.chart import (
    CancelEvent,
    Effect,
    EmitEvent,
    LogMessage,
    Machine,
    RunAction,
    ScheduleEvent,
    SendEvent,
    StartActor,
    StopActor,
)
from backstate.chart._actions import Action, CustomAction, EnqueueAction, SpawnAction
from backstate.chart._nodes import StateNode
from backstate.chart._policies import PolicyError, check_retry, check_timeout
from backstate.runtime._code import RefusedChild
from backstate.runtime._deployments import Persistent

MAX_DELAY_MS = 10 * 365 * 24 * 3600 * 1000  # ten years


class BadOutput(Exception):
    """What a worker sent is not what the protocol says."""


# -- the references (in a worker) ----------------------------------------------------------


class Refs:
    """The functions of a machine's custom actions and services, by reference."""

    def __init__(self, machine: Machine) -> None:
        self.functions: dict[str, Any] = {}
        self._refs: dict[int, str] = {}
        impls = machine.implementations
        for name, fn in impls.actions.items():
            if callable(fn) and not isinstance(fn, Action):
                self._add(f"a:{name}", fn)
        for name, logic in impls.actors.items():
            if callable(logic):
                self._add(f"s:{name}", logic)
        inline = {"a": 0, "s": 0}
        for node in _nodes(machine.root):
            for action in _actions(node):
                kind = "a" if isinstance(action, CustomAction) else "s"
                fn = action.fn if isinstance(action, CustomAction) else action.logic
                if callable(fn) and id(fn) not in self._refs:
                    self._add(f"{kind}#{inline[kind]}", fn)
                    inline[kind] += 1
            for invoke in node.invoke:
                if callable(invoke.logic) and id(invoke.logic) not in self._refs:
                    self._add(f"s#{inline['s']}", invoke.logic)
                    inline["s"] += 1

    def _add(self, ref: str, fn: Any) -> None:
        self.functions[ref] = fn
        self._refs.setdefault(id(fn), ref)

    def ref(self, fn: Any) -> str | None:
        return self._refs.get(id(fn))


def _nodes(node: StateNode) -> list[StateNode]:
    found = [node]
    for child in node.children.values():
        found.extend(_nodes(child))
    return found


def _actions(node: StateNode) -> list[CustomAction | SpawnAction]:
    lists = [node.entry, node.exit, node.initial_actions]
    lists.extend(t.actions for transitions in node.transitions.values() for t in transitions)
    lists.extend(t.actions for t in node.always)
    found: list[CustomAction | SpawnAction] = []
    for actions in lists:
        for action in actions:
            if isinstance(action, CustomAction | SpawnAction):
                found.append(action)
            elif isinstance(action, EnqueueAction):
                pass  # what it enqueues is known only when it runs: named ones resolve
    return found


# -- worker -> JSON ----------------------------------------------------------------------------


def encode_effects(effects: list[Effect], refs: Refs) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for effect in effects:
        if isinstance(effect, RunAction):
            out.append(
                {
                    "k": "action",
                    "name": effect.name,
                    "ref": refs.ref(effect.fn),
                    "params": effect.params,
                    "context": effect.context,
                    "event": effect.event,
                }
            )
        elif isinstance(effect, ScheduleEvent):
            out.append(
                {
                    "k": "schedule",
                    "id": effect.id,
                    "event": effect.event,
                    "delay": effect.delay_ms,
                    "to": effect.to,
                }
            )
        elif isinstance(effect, CancelEvent):
            out.append({"k": "cancel", "id": effect.id})
        elif isinstance(effect, SendEvent):
            out.append({"k": "send", "to": effect.to, "event": effect.event})
        elif isinstance(effect, StartActor):
            out.append(
                {
                    "k": "start",
                    "id": effect.id,
                    "src": effect.src,
                    "input": effect.input,
                    "systemId": effect.system_id,
                    "kind": effect.kind,
                    "logic": _logic(effect.logic, refs),
                    "retry": effect.retry,
                    "timeoutMs": effect.timeout_ms,
                }
            )
        elif isinstance(effect, StopActor):
            out.append({"k": "stop", "id": effect.id})
        elif isinstance(effect, EmitEvent):
            out.append({"k": "emit", "event": effect.event})
        elif isinstance(effect, LogMessage):
            out.append({"k": "log", "label": effect.label, "value": effect.value})
    return out


def _logic(logic: Any, refs: Refs) -> Any:
    if isinstance(logic, Persistent):
        return {"persistent": [logic.machine, logic.instance]}
    if isinstance(logic, RefusedChild):
        return {"refused": [logic.code, logic.message]}
    if logic is None:
        return None
    ref = refs.ref(logic)
    return {"service": ref} if ref is not None else None


# -- JSON -> the server (checked) -----------------------------------------------------------------


class Remote:
    """A custom action's or service's function, in the worker that runs it."""

    __slots__ = ("ref",)

    def __init__(self, ref: str) -> None:
        self.ref = ref

    def __repr__(self) -> str:
        return f"<remote {self.ref}>"


def decode_effects(data: Any) -> list[Effect]:
    if not isinstance(data, list):
        raise BadOutput("effects must be a list")
    return [_effect(item) for item in data]


def _effect(item: Any) -> Effect:
    if not isinstance(item, dict):
        raise BadOutput("an effect must be an object")
    kind = item.get("k")
    if kind == "action":
        ref = item.get("ref")
        return RunAction(
            _str(item, "name"),
            item.get("params"),
            item.get("context"),
            _event(item.get("event")),
            Remote(ref) if isinstance(ref, str) else None,  # type: ignore[arg-type]
            False,
        )
    if kind == "schedule":
        delay = item.get("delay")
        if not isinstance(delay, int) or isinstance(delay, bool) or not 0 <= delay <= MAX_DELAY_MS:
            raise BadOutput(f"a delay must be 0..{MAX_DELAY_MS} ms")
        return ScheduleEvent(
            _opt_str(item, "id"), _event(item.get("event")), delay, _str(item, "to")
        )
    if kind == "cancel":
        return CancelEvent(_str(item, "id"))
    if kind == "send":
        return SendEvent(_str(item, "to"), _event(item.get("event")))
    if kind == "start":
        actor_kind = item.get("kind")
        if actor_kind not in ("invoke", "spawn"):
            raise BadOutput("an actor is invoked or spawned")
        try:
            retry, timeout_ms = check_retry(item.get("retry")), check_timeout(item.get("timeoutMs"))
        except PolicyError as exc:
            raise BadOutput(str(exc)) from None
        return StartActor(
            _str(item, "id"),
            _str(item, "src"),
            item.get("input"),
            _opt_str(item, "systemId"),
            actor_kind,
            _decoded_logic(item.get("logic")),
            retry,
            timeout_ms,
        )
    if kind == "stop":
        return StopActor(_str(item, "id"))
    if kind == "emit":
        return EmitEvent(_event(item.get("event")))
    if kind == "log":
        return LogMessage(_opt_str(item, "label"), item.get("value"))
    raise BadOutput(f"unknown effect {kind!r}")


def _decoded_logic(logic: Any) -> Any:
    if logic is None:
        return None
    if isinstance(logic, dict) and len(logic) == 1:
        ((kind, value),) = logic.items()
        if kind == "service" and isinstance(value, str):
            return Remote(value)
        if kind == "persistent" and _strings(value, 2):
            return Persistent(value[0], value[1])
        if kind == "refused" and _strings(value, 2):
            return RefusedChild(value[0], value[1])
    raise BadOutput("an actor's logic is a service, a persistent child or refused")


def _strings(value: Any, count: int) -> bool:
    return (
        isinstance(value, list) and len(value) == count and all(isinstance(v, str) for v in value)
    )


def _str(item: dict[str, Any], name: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise BadOutput(f"{name} must be a string")
    return value


def _opt_str(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    if value is not None and not isinstance(value, str):
        raise BadOutput(f"{name} must be a string")
    return value


def _event(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise BadOutput("an event must be an object with a string type")
    return value
