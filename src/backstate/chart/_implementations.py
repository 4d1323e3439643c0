"""Resolution of action, guard, actor and delay references against ``setup(...)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._actions import (
    Action,
    AndGuard,
    AssignAction,
    CancelAction,
    CustomAction,
    CustomGuard,
    EmitAction,
    EnqueueAction,
    Guard,
    LogAction,
    NotGuard,
    OrGuard,
    RaiseAction,
    SendToAction,
    SpawnAction,
    StateInGuard,
    StopChildAction,
)
from ._errors import DefinitionError

_GUARD_COMBINATORS = ("xstate.and", "xstate.or", "xstate.not", "xstate.stateIn")


class Implementations:
    def __init__(
        self,
        actions: Mapping[str, Any] | None = None,
        guards: Mapping[str, Any] | None = None,
        actors: Mapping[str, Any] | None = None,
        delays: Mapping[str, Any] | None = None,
    ) -> None:
        self.actions = dict(actions or {})
        self.guards = dict(guards or {})
        self.actors = dict(actors or {})
        self.delays = dict(delays or {})

    def merged(self, other: Implementations) -> Implementations:
        return Implementations(
            {**self.actions, **other.actions},
            {**self.guards, **other.guards},
            {**self.actors, **other.actors},
            {**self.delays, **other.delays},
        )

    # -- actions ----------------------------------------------------------------------

    def actions_list(self, refs: Any, path: str) -> list[Action]:
        if refs is None:
            return []
        items = refs if isinstance(refs, list | tuple) else [refs]
        return [self.action(ref, path) for ref in items]

    def action(self, ref: Any, path: str) -> Action:
        if isinstance(ref, Action):
            return ref
        if callable(ref):
            return CustomAction(getattr(ref, "__name__", "inline"), ref, None)
        if isinstance(ref, str):
            return self._named_action(ref, None, path)
        if isinstance(ref, Mapping) and isinstance(ref.get("type"), str):
            kind = ref["type"]
            if kind.startswith("xstate."):
                return self._builtin(ref, path)
            return self._named_action(kind, ref.get("params"), path)
        raise DefinitionError("invalid-config", path, f"invalid action {ref!r}")

    def _named_action(self, name: str, params: Any, path: str) -> Action:
        if name not in self.actions:
            raise DefinitionError("unknown-action", path, f"action {name!r} is not implemented")
        impl = self.actions[name]
        if isinstance(impl, Mapping) and str(impl.get("type", "")).startswith("xstate."):
            action = self._builtin(impl, path)
            if isinstance(action, AssignAction | EnqueueAction):
                action.name = name
        elif isinstance(impl, Action):
            action = impl
        elif callable(impl):
            return CustomAction(name, impl, params)
        else:
            raise DefinitionError("invalid-config", path, f"action {name!r} is not callable")
        if params is not None:
            action = _with_params(action, params)
        return action

    def _builtin(self, d: Mapping[str, Any], path: str) -> Action:
        kind = d["type"]
        action: Action
        if kind == "xstate.assign":
            action = AssignAction(d.get("assignment"))
        elif kind == "xstate.raise":
            self._check_delay(d.get("delay"), path)
            action = RaiseAction(d.get("event"), d.get("delay"), d.get("id"))
        elif kind in ("xstate.sendTo", "xstate.sendParent"):
            self._check_delay(d.get("delay"), path)
            to = d.get("to", "#_parent") if kind == "xstate.sendTo" else "#_parent"
            action = SendToAction(to, d.get("event"), d.get("delay"), d.get("id"))
        elif kind == "xstate.cancel":
            action = CancelAction(d.get("sendId"))
        elif kind == "xstate.log":
            action = LogAction(d.get("value"), d.get("label"))
        elif kind == "xstate.emit":
            action = EmitAction(d.get("event"))
        elif kind == "xstate.spawnChild":
            if d.get("id") is None:
                raise DefinitionError("invalid-config", path, "spawnChild needs an 'id'")
            src, logic = self.actor(d.get("src"), path)
            action = SpawnAction(src, logic, d["id"], d.get("input"), d.get("systemId"))
        elif kind == "xstate.stopChild":
            action = StopChildAction(d.get("id"))
        elif kind == "xstate.enqueueActions":
            collect = d.get("collect")
            if not callable(collect):
                raise DefinitionError("invalid-config", path, "enqueueActions needs a function")
            action = EnqueueAction(collect)
        else:
            raise DefinitionError("unknown-action", path, f"unknown built-in action {kind!r}")
        if d.get("params") is not None:
            action.params = d["params"]
        return action

    # -- guards -----------------------------------------------------------------------

    def guard(self, ref: Any, path: str) -> Guard | None:
        if ref is None:
            return None
        if isinstance(ref, Guard):
            return ref
        if callable(ref):
            return CustomGuard(getattr(ref, "__name__", "inline"), ref, None)
        if isinstance(ref, str):
            return self._named_guard(ref, None, path)
        if isinstance(ref, Mapping) and isinstance(ref.get("type"), str):
            kind = ref["type"]
            if kind in _GUARD_COMBINATORS:
                return self._combinator(ref, path)
            return self._named_guard(kind, ref.get("params"), path)
        raise DefinitionError("invalid-config", path, f"invalid guard {ref!r}")

    def _named_guard(self, name: str, params: Any, path: str, depth: int = 0) -> Guard | None:
        if name not in self.guards:
            raise DefinitionError("unknown-guard", path, f"guard {name!r} is not implemented")
        impl = self.guards[name]
        if isinstance(impl, str | Mapping) and depth < 32:
            if isinstance(impl, Mapping) and impl.get("type") in _GUARD_COMBINATORS:
                return self._combinator(impl, path)
            ref_name = impl if isinstance(impl, str) else impl.get("type")
            if isinstance(ref_name, str):
                ref_params = None if isinstance(impl, str) else impl.get("params")
                return self._named_guard(ref_name, ref_params, path, depth + 1)
        if not callable(impl):
            raise DefinitionError("invalid-config", path, f"guard {name!r} is not callable")
        return CustomGuard(name, impl, params)

    def _combinator(self, d: Mapping[str, Any], path: str) -> Guard:
        kind = d["type"]
        if kind == "xstate.not":
            return NotGuard(self.guard(d.get("guard"), path))
        if kind == "xstate.stateIn":
            return StateInGuard(d.get("stateValue"))
        guards = [self.guard(g, path) for g in d.get("guards") or []]
        return AndGuard(guards) if kind == "xstate.and" else OrGuard(guards)

    # -- actors and delays --------------------------------------------------------------

    def actor(self, src: Any, path: str) -> tuple[str, Any]:
        if isinstance(src, str):
            if src not in self.actors:
                raise DefinitionError("unknown-actor", path, f"actor {src!r} is not implemented")
            return src, self.actors[src]
        name = getattr(src, "id", None) or getattr(src, "__name__", None) or "inline"
        return str(name), src

    def _check_delay(self, delay: Any, path: str) -> None:
        if isinstance(delay, str) and not delay.isdigit():
            self.delay(delay, path)

    def delay(self, name: str, path: str) -> Any:
        if name not in self.delays:
            raise DefinitionError("unknown-delay", path, f"delay {name!r} is not implemented")
        return self.delays[name]


def _with_params(action: Action, params: Any) -> Action:
    """A copy of a shared built-in with its own params."""
    clone = object.__new__(type(action))
    for cls in type(action).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            setattr(clone, slot, getattr(action, slot))
    clone.params = params
    return clone


ActionFactory = Callable[[Any, str], Action]
