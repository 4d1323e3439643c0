"""Snapshots: an instance's state at rest, immutable, plain JSON on the wire."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._configuration import matches_state

if TYPE_CHECKING:
    from ._configuration import Configuration
    from ._machine import Machine


class Snapshot:
    __slots__ = (
        "children",
        "configuration",
        "context",
        "error",
        "history",
        "json_text",
        "machine",
        "output",
        "status",
        "unhandled",
    )

    def __init__(
        self,
        machine: Machine,
        configuration: Configuration,
        context: Any,
        status: str,
        output: Any,
        error: Any,
        history: dict[str, tuple[str, ...]],
        children: dict[str, dict[str, Any]],
    ) -> None:
        self.machine = machine
        self.configuration = configuration
        self.context = context
        self.status = status
        self.output = output
        self.error = error
        self.history = history
        self.children = children
        # Its JSON, once someone encoded it (``to_json`` as text): a snapshot never
        # changes, so whoever stores or sends it again can reuse the text.
        self.json_text: str | None = None
        # Why the event that made it selected no transition (``_unhandled``), if it
        # selected none: what the caller is told, never stored with the snapshot.
        self.unhandled: dict[str, Any] | None = None

    @property
    def value(self) -> Any:
        return self.configuration.value

    @property
    def tags(self) -> frozenset[str]:
        return self.configuration.tags

    def has_tag(self, tag: str) -> bool:
        return tag in self.configuration.tags

    def matches(self, state_value: Any) -> bool:
        return matches_state(state_value, self.configuration.value)

    @property
    def meta(self) -> dict[str, Any]:
        """``meta`` of every active state that has one, by state id (XState's getMeta)."""
        return {n.id: n.meta for n in self.configuration.nodes if n.meta is not None}

    @property
    def state_strings(self) -> list[str]:
        return list(self.configuration.state_strings)

    @property
    def atomic_ids(self) -> list[str]:
        return [n.id for n in self.configuration.atomic]

    @property
    def active_ids(self) -> list[str]:
        return [n.id for n in self.configuration.nodes]

    def can(self, event: Any) -> bool:
        """Whether ``event`` would select a transition with a target or actions."""
        return self.machine.can(self, event)

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.configuration.value,
            "context": self.context,
            "status": self.status,
            "output": self.output,
            "error": self.error,
            "historyValue": {k: list(v) for k, v in self.history.items()},
            "children": {k: dict(v) for k, v in self.children.items()},
        }

    def __repr__(self) -> str:
        return f"<Snapshot {self.status} {self.value!r}>"
