"""The legality of a configuration, checked by the property, differential and case tests."""

from __future__ import annotations

from backstate.chart import Snapshot


def illegal(snapshot: Snapshot) -> str | None:
    """Why the snapshot's configuration is not legal, or None: every active state's parent
    is active, a compound state has exactly one active child, a parallel state all its
    regions, and no history state is active."""
    active = set(snapshot.configuration.nodes)
    for node in snapshot.configuration.nodes:
        kids = [c for c in node.children.values() if c.type != "history"]
        if node.type == "history":
            return f"history state {node.id} is active"
        if node.parent is not None and node.parent not in active:
            return f"{node.id} is active without its parent"
        if node.type == "compound" and sum(c in active for c in kids) != 1:
            return f"{node.id} needs exactly one active child"
        if node.type == "parallel" and not all(c in active for c in kids):
            return f"{node.id} needs all its regions active"
    return None
