"""A machine as plain JSON for drawing it: every state and every transition, labelled.

``outline(machine)`` is the skeleton (see ``_describe``) plus what a diagram shows:
entry and exit actions, invoked services, and each transition with its kind (``event``,
``after``, ``always``, ``done``, ``invoke.done``, ``invoke.error``), event, delay, the
invoked service's ``src`` (for ``invoke.*``), guard
and action labels, and its targets resolved to state ids. Labels are names, never code:
a named action or guard is its name, a built-in its short form (``assign``,
``raise(E)``, ``!g``, ``a && b``), a callable its ``__name__``. Nothing in an outline
is executable; ``check_outline`` validates one that came from elsewhere (a worker).

A node: ``{id, key, type, initial?, history?, default?, tags, entry, exit, invoke,
transitions, states}`` with ``states`` a list in document order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._errors import DefinitionError
from ._machine import Machine
from ._nodes import StateNode, Transition

MAX_OUTLINE_DEPTH = 64
MAX_LABEL = 200  # characters of one label; longer ones are cut
KINDS = ("event", "after", "always", "done", "invoke.done", "invoke.error")


def outline(machine: Machine) -> dict[str, Any]:
    return _node(machine.root)


def _node(node: StateNode) -> dict[str, Any]:
    config = node.config
    out: dict[str, Any] = {"id": node.id, "key": node.key, "type": node.type}
    if node.initial is not None:
        out["initial"] = node.initial.id
    if node.history is not None:
        out["history"] = node.history
        default = node.history_default
        out["default"] = [t.id for t in default.targets] if default and default.targets else []
    out["tags"] = list(node.tags)
    out["entry"] = [_action(a) for a in _as_list(config.get("entry"))]
    out["exit"] = [_action(a) for a in _as_list(config.get("exit"))]
    out["invoke"] = [{"id": inv.id, "src": _cut(inv.src)} for inv in node.invoke]
    out["transitions"] = _transitions(node) if node.type != "history" else []
    out["states"] = [_node(child) for child in node.children.values()]
    return out


def _transitions(node: StateNode) -> list[dict[str, Any]]:
    config = node.config
    raw: dict[str, tuple[str, Any, Any]] = {}  # descriptor -> (kind, delay, config)
    for descriptor, tconfig in (config.get("on") or {}).items():
        raw[descriptor] = ("event", None, tconfig)
    if "onDone" in config:
        raw[f"xstate.done.state.{node.id}"] = ("done", None, config["onDone"])
    for inv_config, inv in zip(_as_list(config.get("invoke")), node.invoke, strict=True):
        if "onDone" in inv_config:
            raw[f"xstate.done.actor.{inv.id}"] = ("invoke.done", inv.src, inv_config["onDone"])
        if "onError" in inv_config:
            raw[f"xstate.error.actor.{inv.id}"] = ("invoke.error", inv.src, inv_config["onError"])
    for key, tconfig in (config.get("after") or {}).items():
        delay: int | str = int(key) if str(key).isdigit() else str(key)
        raw[f"xstate.after.{delay}.{node.id}"] = ("after", delay, tconfig)
    out: list[dict[str, Any]] = []
    for descriptor, compiled in node.transitions.items():
        kind, detail, tconfig = raw[descriptor]
        for t, item in zip(compiled, _items(tconfig), strict=False):
            entry = _transition(t, item, kind)
            if kind == "event":
                entry["event"] = _cut(descriptor)
            elif kind == "after":
                entry["delay"] = detail
            elif kind.startswith("invoke."):
                entry["invoke"] = _cut(detail)
            out.append(entry)
    for t, item in zip(node.always, _items(config.get("always")), strict=False):
        out.append(_transition(t, item, "always"))
    return out


def _transition(t: Transition, item: Mapping[str, Any], kind: str) -> dict[str, Any]:
    guard = item.get("guard")
    return {
        "kind": kind,
        "guard": None if guard is None else _guard(guard),
        "actions": [_action(a) for a in _as_list(item.get("actions"))],
        "targets": [target.id for target in t.targets or ()],
        "reenter": t.reenter,
    }


def _items(tconfig: Any) -> list[Mapping[str, Any]]:
    items = tconfig if isinstance(tconfig, list) else [tconfig]
    return [{"target": i} if i is None or isinstance(i, str) else i for i in items]


def _action(ref: Any) -> str:
    if isinstance(ref, str):
        return _cut(ref)
    if isinstance(ref, Mapping):
        kind = ref.get("type")
        if isinstance(kind, str) and kind.startswith("xstate."):
            return _cut(_builtin(kind[len("xstate.") :], ref))
        return _action(kind)
    return _callable(ref)


def _builtin(kind: str, ref: Mapping[str, Any]) -> str:
    event = ref.get("event")
    event_type = event.get("type") if isinstance(event, Mapping) else event
    if kind == "raise" and isinstance(event_type, str):
        return f"raise({event_type})"
    if kind == "sendTo":
        to = ref.get("to")
        target = "parent" if to == "#_parent" else to if isinstance(to, str) else "…"
        shown = event_type if isinstance(event_type, str) else "…"
        return f"sendTo({target}, {shown})"
    if kind == "spawnChild" and isinstance(ref.get("src"), str):
        return f"spawn({ref['src']})"
    return kind


def _guard(ref: Any) -> str:
    if isinstance(ref, str):
        return _cut(ref)
    if isinstance(ref, Mapping):
        kind = ref.get("type")
        if kind == "xstate.not":
            return _cut("!" + _guard(ref.get("guard")))
        if kind in ("xstate.and", "xstate.or"):
            joiner = " && " if kind == "xstate.and" else " || "
            parts = [_guard(g) for g in _as_list(ref.get("guards"))]
            return _cut("(" + joiner.join(parts) + ")")
        if kind == "xstate.stateIn":
            value = ref.get("stateValue")
            return _cut(f"in({value})" if isinstance(value, str) else "in(…)")
        return _guard(kind)
    return _callable(ref)


def _callable(fn: Any) -> str:
    name = getattr(fn, "__name__", None)
    return _cut(name) if isinstance(name, str) and name != "<lambda>" else "inline"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def check_outline(data: Any) -> dict[str, Any]:
    """``data`` if it is an outline (types and nesting checked, nothing evaluated), else
    ``DefinitionError`` (invalid-config)."""

    def fail(why: str) -> DefinitionError:
        return DefinitionError("invalid-config", "", f"not a machine outline: {why}")

    def strings(value: Any, what: str) -> None:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail(f"{what} must be a list of strings")

    def check(node: Any, depth: int) -> None:
        if not isinstance(node, dict) or depth > MAX_OUTLINE_DEPTH:
            raise fail("a state must be an object")
        for name in ("id", "key", "type"):
            if not isinstance(node.get(name), str):
                raise fail(f"{name} must be a string")
        for name in ("initial", "history"):
            if name in node and not isinstance(node[name], str):
                raise fail(f"{name} must be a string")
        for name in ("tags", "entry", "exit"):
            strings(node.get(name), name)
        if "default" in node:
            strings(node["default"], "default")
        invokes = node.get("invoke")
        if not isinstance(invokes, list) or not all(
            isinstance(i, dict) and isinstance(i.get("id"), str) and isinstance(i.get("src"), str)
            for i in invokes
        ):
            raise fail("invoke must be a list of {id, src}")
        transitions = node.get("transitions")
        if not isinstance(transitions, list):
            raise fail("transitions must be a list")
        for t in transitions:
            if not isinstance(t, dict) or t.get("kind") not in KINDS:
                raise fail("a transition needs a known kind")
            if t.get("guard") is not None and not isinstance(t["guard"], str):
                raise fail("a guard must be a string")
            for name in ("event", "invoke"):
                if name in t and not isinstance(t[name], str):
                    raise fail(f"{name} must be a string")
            if "delay" in t and not isinstance(t["delay"], int | str):
                raise fail("a delay must be a number or a name")
            strings(t.get("actions"), "actions")
            strings(t.get("targets"), "targets")
        states = node.get("states")
        if not isinstance(states, list):
            raise fail("states must be a list")
        for child in states:
            check(child, depth + 1)

    check(data, 0)
    return data  # type: ignore[no-any-return]
