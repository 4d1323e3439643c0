"""The compiled state-node tree: built once per machine, read-only afterwards.

Every node gets a document-order number (``order``, pre-order) and the highest order
among its descendants (``end``), so "is A a descendant of B" is two comparisons.
Transitions are grouped per node by event descriptor in XState v5's order: ``on``
entries, then ``onDone``, then each invoke's ``onDone``/``onError``, then ``after``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._errors import DefinitionError
from ._policies import PolicyError, invoke_policy

if TYPE_CHECKING:
    from ._actions import Action, Guard

STATE_TYPES = ("atomic", "compound", "parallel", "final", "history")
# "*", or tokens without wildcards, optionally ending in ".*"; XState only warns about
# other wildcards (which never match), we reject them when the machine is loaded.
_DESCRIPTOR = re.compile(r"^(\*|[^*]+?(\.\*)?)$")


class Transition:
    __slots__ = (
        "actions",
        "event_type",
        "guard",
        "reenter",
        "source",
        "target_specs",
        "targets",
    )

    def __init__(
        self,
        source: StateNode,
        event_type: str | None,
        target_specs: list[str] | None,
        guard: Guard | None,
        actions: list[Action],
        reenter: bool,
    ) -> None:
        self.source = source
        self.event_type = event_type
        self.target_specs = target_specs
        self.targets: tuple[StateNode, ...] | None = None
        self.guard = guard
        self.actions = actions
        self.reenter = reenter

    def __repr__(self) -> str:
        targets = [t.id for t in self.targets] if self.targets else None
        return f"<Transition {self.source.id} {self.event_type!r} -> {targets}>"


class InvokeDef:
    __slots__ = ("id", "input", "logic", "retry", "src", "system_id", "timeout_ms")

    def __init__(
        self,
        id: str,
        src: str,
        logic: Any,
        input: Any,
        system_id: str | None,
        retry: dict[str, Any] | None = None,
        timeout_ms: int | None = None,
    ) -> None:
        self.id = id
        self.src = src
        self.logic = logic
        self.input = input
        self.system_id = system_id
        self.retry = retry  # see _policies
        self.timeout_ms = timeout_ms


class StateNode:
    __slots__ = (
        "after_events",
        "always",
        "children",
        "config",
        "depth",
        "description",
        "end",
        "entry",
        "exit",
        "history",
        "history_children",
        "history_default",
        "id",
        "initial",
        "initial_actions",
        "invoke",
        "key",
        "meta",
        "order",
        "output",
        "parent",
        "path",
        "tags",
        "transitions",
        "type",
    )

    def __init__(self, key: str, parent: StateNode | None, config: Mapping[str, Any]) -> None:
        self.key = key
        self.parent = parent
        self.config = config
        self.path: tuple[str, ...] = (*parent.path, key) if parent else ()
        self.depth = len(self.path)
        self.id = ""
        self.order = 0
        self.end = 0
        self.type = "atomic"
        self.children: dict[str, StateNode] = {}
        self.history_children: list[StateNode] = []
        self.initial: StateNode | None = None
        self.initial_actions: list[Action] = []
        self.entry: list[Action] = []
        self.exit: list[Action] = []
        self.transitions: dict[str, list[Transition]] = {}
        self.always: list[Transition] = []
        self.after_events: list[str] = []
        self.invoke: list[InvokeDef] = []
        self.tags: tuple[str, ...] = ()
        self.history: str | None = None
        self.history_default: Transition | None = None
        self.output: Any = None
        self.meta: Any = None
        self.description: str | None = None

    def __repr__(self) -> str:
        return f"<StateNode #{self.id}>"

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    def is_descendant_of(self, other: StateNode) -> bool:
        return other.order < self.order <= other.end

    def proper_ancestors(self, upto: StateNode | None = None) -> list[StateNode]:
        out: list[StateNode] = []
        if upto is self:
            return out
        node = self.parent
        while node is not None and node is not upto:
            out.append(node)
            node = node.parent
        return out

    @property
    def real_children(self) -> list[StateNode]:
        return [c for c in self.children.values() if c.type != "history"]


def _sorted_keys(mapping: Mapping[str, Any]) -> list[str]:
    """Keys in JavaScript's object order: integer-like keys first, ascending."""
    ints = sorted((k for k in mapping if str(k).isdigit()), key=int)
    return ints + [k for k in mapping if not str(k).isdigit()]


class TreeBuilder:
    """Builds the node tree from a config. Action and guard refs are compiled through
    the callables passed in, so this module knows nothing of implementations."""

    def __init__(
        self,
        compile_actions: Callable[[Any, str], list[Action]],
        compile_guard: Callable[[Any, str], Guard | None],
        resolve_delay: Callable[[Any, str], Any],
        resolve_actor: Callable[[Any, str], tuple[str, Any]],
    ) -> None:
        self.compile_actions = compile_actions
        self.compile_guard = compile_guard
        self.resolve_delay = resolve_delay
        self.resolve_actor = resolve_actor
        self.nodes: list[StateNode] = []
        self.invoke_defaults: Any = None  # the root's "invokeDefaults" (see _policies)
        self.by_id: dict[str, StateNode] = {}

    def build(self, config: Mapping[str, Any], machine_id: str) -> StateNode:
        self.invoke_defaults = config.get("invokeDefaults")
        root = StateNode("", None, config)
        self._structure(root, machine_id)
        for node in self.nodes:
            self._behaviour(node)
        for node in self.nodes:
            for transitions in node.transitions.values():
                for t in transitions:
                    self._resolve_targets(t)
            for t in node.always:
                self._resolve_targets(t)
            if node.history_default is not None:
                self._resolve_targets(node.history_default)
        return root

    # -- structure: types, ids, order ------------------------------------------------

    def _structure(self, node: StateNode, machine_id: str) -> None:
        config = node.config
        if not isinstance(config, Mapping):
            raise DefinitionError("invalid-config", node.dotted, "a state config must be an object")
        node.order = len(self.nodes)
        self.nodes.append(node)
        custom_id = config.get("id")
        if node.parent is None:
            node.id = str(custom_id) if custom_id is not None else machine_id
        else:
            node.id = (
                str(custom_id) if custom_id is not None else ".".join((machine_id, *node.path))
            )
        if node.id in self.by_id:
            # Generated ids can collide with keys that contain a '.'; only ids
            # someone wrote are an error (XState silently lets the last one win).
            if custom_id is not None or self.by_id[node.id].config.get("id") is not None:
                raise DefinitionError(
                    "duplicate-id", node.dotted, f"duplicate state id {node.id!r}"
                )
        else:
            self.by_id[node.id] = node
        states = config.get("states") or {}
        if not isinstance(states, Mapping):
            raise DefinitionError("invalid-config", node.dotted, "'states' must be an object")
        declared = config.get("type")
        if declared is not None and declared not in STATE_TYPES:
            raise DefinitionError("invalid-config", node.dotted, f"unknown state type {declared!r}")
        if declared is not None:
            node.type = declared
        elif states:
            node.type = "compound"
        elif config.get("history"):
            node.type = "history"
        if node.type in ("atomic", "final", "history") and states:
            raise DefinitionError(
                "invalid-config", node.dotted, f"a {node.type} state cannot have child states"
            )
        for key in _sorted_keys(states):
            if not isinstance(key, str) or not key:
                raise DefinitionError("invalid-config", node.dotted, f"invalid state key {key!r}")
            child = StateNode(key, node, states[key])
            node.children[key] = child
            self._structure(child, machine_id)
            if child.type == "history":
                node.history_children.append(child)
        node.end = len(self.nodes) - 1

    # -- behaviour: initial, actions, transitions -------------------------------------

    def _behaviour(self, node: StateNode) -> None:
        config = node.config
        path = node.dotted
        node.tags = tuple(_as_list(config.get("tags")))
        node.meta = config.get("meta")
        node.description = config.get("description")
        node.output = config.get("output")
        node.entry = self.compile_actions(config.get("entry"), path)
        node.exit = self.compile_actions(config.get("exit"), path)
        if node.type == "history":
            self._history(node)
            return
        if node.type == "compound":
            self._initial(node)
        self._invokes(node)
        on = config.get("on") or {}
        if not isinstance(on, Mapping):
            raise DefinitionError("invalid-config", path, "'on' must be an object")
        for descriptor, tconfig in on.items():
            if descriptor == "":
                raise DefinitionError(
                    "invalid-event-descriptor", path, "use 'always' for eventless transitions"
                )
            if not _DESCRIPTOR.match(descriptor):
                raise DefinitionError(
                    "invalid-event-descriptor", path, f"invalid event descriptor {descriptor!r}"
                )
            node.transitions[descriptor] = self._transitions(node, descriptor, tconfig)
        if "onDone" in config:
            descriptor = f"xstate.done.state.{node.id}"
            node.transitions[descriptor] = self._transitions(node, descriptor, config["onDone"])
        for index, inv in enumerate(_as_list(config.get("invoke"))):
            idef = node.invoke[index]
            if "onDone" in inv:
                d = f"xstate.done.actor.{idef.id}"
                node.transitions[d] = self._transitions(node, d, inv["onDone"])
            if "onError" in inv:
                d = f"xstate.error.actor.{idef.id}"
                node.transitions[d] = self._transitions(node, d, inv["onError"])
        self._after(node)
        if "always" in config:
            node.always = self._transitions(node, None, config["always"])

    def _initial(self, node: StateNode) -> None:
        initial = node.config.get("initial")
        actions: Any = None
        if isinstance(initial, Mapping):
            actions = initial.get("actions")
            initial = initial.get("target")
        if initial is None:
            raise DefinitionError(
                "missing-initial", node.dotted, f"compound state #{node.id} needs an 'initial'"
            )
        child = node.children.get(initial) if isinstance(initial, str) else None
        if child is None:
            raise DefinitionError(
                "invalid-initial",
                node.dotted,
                f"initial state {initial!r} is not a child of #{node.id}",
            )
        node.initial = child
        node.initial_actions = self.compile_actions(actions, node.dotted)

    def _history(self, node: StateNode) -> None:
        kind = node.config.get("history") or "shallow"
        kind = "shallow" if kind is True else kind
        if kind not in ("shallow", "deep"):
            raise DefinitionError(
                "invalid-history", node.dotted, f"history must be shallow or deep, not {kind!r}"
            )
        if node.parent is None or node.parent.type == "atomic":
            raise DefinitionError(
                "invalid-history", node.dotted, "a history state needs a parent with child states"
            )
        node.history = kind
        target = node.config.get("target")
        if target is not None:
            specs = [str(t) for t in _as_list(target)]
            node.history_default = Transition(node, None, specs, None, [], False)

    def _invokes(self, node: StateNode) -> None:
        for index, inv in enumerate(_as_list(node.config.get("invoke"))):
            if not isinstance(inv, Mapping) or "src" not in inv:
                raise DefinitionError("invalid-config", node.dotted, "an invoke needs a 'src'")
            src_name, logic = self.resolve_actor(inv["src"], node.dotted)
            inv_id = inv.get("id") or f"{node.id}:invocation[{index}]"
            try:
                retry, timeout_ms = invoke_policy(inv, self.invoke_defaults)
            except PolicyError as exc:
                raise DefinitionError("invalid-config", node.dotted, str(exc)) from None
            node.invoke.append(
                InvokeDef(
                    str(inv_id),
                    src_name,
                    logic,
                    inv.get("input"),
                    inv.get("systemId"),
                    retry,
                    timeout_ms,
                )
            )

    def _after(self, node: StateNode) -> None:
        after = node.config.get("after")
        if not after:
            return
        if not isinstance(after, Mapping):
            raise DefinitionError("invalid-config", node.dotted, "'after' must be an object")
        from ._actions import CancelAction, RaiseAction

        for key in _sorted_keys(after):
            delay: Any = int(key) if str(key).isdigit() else key
            if not isinstance(delay, int):
                self.resolve_delay(delay, node.dotted)
            event_type = f"xstate.after.{delay}.{node.id}"
            node.entry.append(RaiseAction({"type": event_type}, delay, event_type))
            node.exit.append(CancelAction(event_type))
            node.after_events.append(event_type)
            found = self._transitions(node, event_type, after[key])
            node.transitions.setdefault(event_type, []).extend(found)

    def _transitions(
        self, node: StateNode, event_type: str | None, tconfig: Any
    ) -> list[Transition]:
        out: list[Transition] = []
        # A list holds alternative transitions, strings among them each one target
        # (XState's toTransitionConfigArray); several targets are {"target": [...]}.
        items = tconfig if isinstance(tconfig, list) else [tconfig]
        for item in items:
            if item is None or isinstance(item, str):
                item = {"target": item}
            if not isinstance(item, Mapping):
                raise DefinitionError("invalid-config", node.dotted, f"invalid transition {item!r}")
            target = item.get("target")
            specs = None if target is None else [str(t) for t in _as_list(target)]
            guard = self.compile_guard(item.get("guard"), node.dotted)
            actions = self.compile_actions(item.get("actions"), node.dotted)
            out.append(
                Transition(
                    node, event_type, specs, guard, actions, bool(item.get("reenter", False))
                )
            )
        return out

    def _resolve_targets(self, t: Transition) -> None:
        if not t.target_specs:
            t.targets = None
            return
        t.targets = tuple(self.resolve_target(t.source, spec) for spec in t.target_specs)

    def resolve_target(self, source: StateNode, spec: str) -> StateNode:
        found: StateNode | None
        if spec.startswith("#"):
            found = resolve_id(self.by_id, spec)
        elif spec.startswith("."):
            found = by_path(source, split_path(spec[1:]))
        elif source.parent is None:
            raise DefinitionError(
                "unknown-target",
                source.dotted,
                f"invalid target {spec!r} from the root; did you mean '.{spec}'?",
            )
        else:
            found = by_path(source.parent, split_path(spec))
        if found is None:
            raise DefinitionError(
                "unknown-target", source.dotted, f"target {spec!r} does not exist"
            )
        return found


def split_path(spec: str) -> list[str]:
    """Split a dotted path; a backslash escapes the next character (``foo\\.bar``)."""
    parts: list[str] = []
    segment: list[str] = []
    chars = iter(spec)
    for ch in chars:
        if ch == "\\":
            segment.append(next(chars, ""))
        elif ch == ".":
            parts.append("".join(segment))
            segment = []
        else:
            segment.append(ch)
    parts.append("".join(segment))
    return parts


def by_path(node: StateNode, keys: list[str]) -> StateNode | None:
    for key in keys:
        if not key:
            break
        child = node.children.get(key)
        if child is None:
            return None
        node = child
    return node


def resolve_id(by_id: Mapping[str, StateNode], spec: str) -> StateNode | None:
    """``#id`` or ``#id.child.path``: the first segment is an id, the rest a path."""
    head, *rest = split_path(spec[1:] if spec.startswith("#") else spec)
    node = by_id.get(head)
    return None if node is None else by_path(node, rest)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]
