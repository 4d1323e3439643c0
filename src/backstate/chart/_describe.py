"""A machine's shape as plain JSON, and a machine made back from it.

``skeleton(machine)`` is the state tree without behaviour: keys, ids written in the
config, types, initial children, history kinds and tags. ``shape(skeleton)`` builds a
``Machine`` from it whose snapshots resolve exactly as the original's do (the same ids,
the same configurations, tags and state strings) but which has no guards, actions or
services: code that must not run machine code (a server running it in sandboxed
workers) reads and checks snapshots with it.
"""

from __future__ import annotations

from typing import Any

from ._machine import Machine
from ._nodes import StateNode

MAX_SKELETON_DEPTH = 64  # nesting of states a skeleton may have


def skeleton(machine: Machine) -> dict[str, Any]:
    return {"id": machine.root.id, **_node(machine.root)}


def _node(node: StateNode) -> dict[str, Any]:
    out: dict[str, Any] = {}
    custom_id = node.config.get("id")
    if node.parent is not None and custom_id is not None:
        out["id"] = str(custom_id)
    if node.type != "atomic" and node.type != "compound":
        out["type"] = node.type
    if node.history is not None:
        out["history"] = node.history
    if node.initial is not None:
        out["initial"] = node.initial.key
    if node.tags:
        out["tags"] = list(node.tags)
    if node.children:
        out["states"] = {key: _node(child) for key, child in node.children.items()}
    return out


def shape(data: Any) -> Machine:
    """The machine of a skeleton. Raises ``DefinitionError`` when it is not one (the
    skeleton is checked: nothing in it is executable)."""
    from ._errors import DefinitionError

    def check(node: Any, depth: int) -> dict[str, Any]:
        if not isinstance(node, dict) or depth > MAX_SKELETON_DEPTH:
            raise DefinitionError("invalid-config", "", "not a machine skeleton")
        allowed = {"id", "type", "history", "initial", "tags", "states"}
        if set(node) - allowed:
            raise DefinitionError("invalid-config", "", f"unexpected {sorted(set(node) - allowed)}")
        for name in ("id", "type", "history", "initial"):
            if name in node and not isinstance(node[name], str):
                raise DefinitionError("invalid-config", "", f"{name} must be a string")
        tags = node.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise DefinitionError("invalid-config", "", "tags must be strings")
        states = node.get("states", {})
        if not isinstance(states, dict):
            raise DefinitionError("invalid-config", "", "states must be an object")
        checked = {k: v for k, v in node.items() if k != "states"}
        if states:
            checked["states"] = {str(k): check(v, depth + 1) for k, v in states.items()}
        return checked

    return Machine(check(data, 0))
