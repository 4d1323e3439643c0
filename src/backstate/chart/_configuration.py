"""Configurations: the set of active state nodes, interned per machine.

Each distinct configuration is built once and then shared, together with everything
derived from it alone (state value, tags, ids, state strings). The transition
algorithm caches its plans per configuration object, which is what keeps the hot path
flat.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._errors import ExecutionError
from ._nodes import StateNode, resolve_id


class Configuration:
    __slots__ = (
        "always_nodes",
        "atomic",
        "by_id",
        "ids",
        "key",
        "node_set",
        "nodes",
        "plans",
        "selections",
        "state_strings",
        "tags",
        "value",
    )

    def __init__(self, nodes: Iterable[StateNode], by_id: dict[str, StateNode]) -> None:
        self.by_id = by_id
        ordered = sorted(set(nodes), key=lambda n: n.order)
        self.nodes: tuple[StateNode, ...] = tuple(ordered)
        self.node_set = frozenset(ordered)
        self.key = frozenset(n.order for n in ordered)
        self.atomic = tuple(n for n in ordered if n.type in ("atomic", "final"))
        self.ids = frozenset(n.id for n in ordered)
        self.tags = frozenset(t for n in ordered for t in n.tags)
        self.state_strings = [n.dotted for n in ordered if n.parent is not None]
        self.always_nodes = any(n.always for n in ordered)
        self.value = state_value(ordered[0], self.node_set)
        self.selections: dict[str, Any] = {}
        self.plans: dict[Any, Any] = {}

    def in_state(self, spec: Any) -> bool:
        if isinstance(spec, str) and spec.startswith("#"):
            return resolve_id(self.by_id, spec) in self.node_set
        return matches_state(spec, self.value)

    def __repr__(self) -> str:
        return f"<Configuration {self.value!r}>"


def state_value(node: StateNode, active: frozenset[StateNode]) -> Any:
    """XState v5's state value: a compound state whose active child is atomic maps to
    the child's key; parallel states and deeper children map to objects; atomic
    children of a parallel state map to ``{}``."""
    children = [c for c in node.children.values() if c in active]
    if node.type == "compound":
        if not children:
            return {}
        child = children[0]
        if child.type in ("atomic", "final"):
            return child.key
    return {c.key: state_value(c, active) for c in children}


def to_state_value(spec: Any) -> Any:
    if isinstance(spec, str):
        parts = spec.split(".")
        value: Any = parts[-1]
        for part in reversed(parts[:-1]):
            value = {part: value}
        return value
    return spec


def matches_state(parent: Any, child: Any) -> bool:
    parent = to_state_value(parent)
    child = to_state_value(child)
    if isinstance(child, str):
        return isinstance(parent, str) and parent == child
    if isinstance(parent, str):
        return parent in child
    if not isinstance(parent, Mapping):
        return False
    return all(key in child and matches_state(sub, child[key]) for key, sub in parent.items())


class Configurations:
    """The interning table of one machine."""

    def __init__(self, root: StateNode, by_id: dict[str, StateNode]) -> None:
        self.root = root
        self.by_id = by_id
        self._by_key: dict[frozenset[int], Configuration] = {}
        self._by_value: dict[str, Configuration] = {}

    def get(self, nodes: Iterable[StateNode]) -> Configuration:
        node_list = list(nodes)
        key = frozenset(n.order for n in node_list)
        found = self._by_key.get(key)
        if found is None:
            found = self._by_key[key] = Configuration(node_list, self.by_id)
        return found

    def from_value(self, value: Any) -> Configuration:
        cache_key = repr(value)
        found = self._by_value.get(cache_key)
        if found is None:
            found = self.get(self._nodes_for_value(value))
            if len(self._by_value) < 10_000:
                self._by_value[cache_key] = found
        return found

    def _nodes_for_value(self, value: Any) -> set[StateNode]:
        nodes: set[StateNode] = {self.root}
        self._walk(self.root, to_state_value(value), nodes)
        for node in list(nodes):
            nodes.update(node.proper_ancestors())
        return nodes

    def _walk(self, node: StateNode, value: Any, out: set[StateNode]) -> None:
        if isinstance(value, str):
            value = {value: {}}
        if not isinstance(value, Mapping):
            raise ExecutionError("invalid-snapshot", node.dotted, f"invalid state value {value!r}")
        chosen: list[StateNode] = []
        for key, sub in value.items():
            child = node.children.get(key)
            if child is None or child.type == "history":
                raise ExecutionError("invalid-snapshot", node.dotted, f"no child state {key!r}")
            out.add(child)
            chosen.append(child)
            self._walk(child, sub, out)
        if node.type == "compound" and not chosen:
            self._defaults(node, out)
        elif node.type == "parallel":
            for child in node.real_children:
                if child not in out:
                    out.add(child)
                    self._defaults(child, out)

    def _defaults(self, node: StateNode, out: set[StateNode]) -> None:
        if node.type == "compound" and node.initial is not None:
            out.add(node.initial)
            self._defaults(node.initial, out)
        elif node.type == "parallel":
            for child in node.real_children:
                out.add(child)
                self._defaults(child, out)
