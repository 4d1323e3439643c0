"""Errors raised by the chart engine.

    ChartError
    ├── DefinitionError   the machine config is wrong (found when it is loaded)
    └── ExecutionError    user code raised, or returned something unusable, during a transition

Each carries a stable ``code`` and the ``path`` of the state node involved (dot-joined
keys from the root, "" for the root itself).
"""

from __future__ import annotations


class ChartError(Exception):
    """Base class of the engine's errors."""

    def __init__(self, code: str, path: str, message: str) -> None:
        super().__init__(f"{message} (at {path or '<root>'}; {code})")
        self.code = code
        self.path = path
        self.message = message


class DefinitionError(ChartError):
    """The machine config is invalid. Codes: unknown-target, missing-initial,
    invalid-initial, duplicate-id, invalid-history, unknown-action, unknown-guard,
    unknown-actor, unknown-delay, invalid-event-descriptor, invalid-config,
    unsupported-scxml."""


class ExecutionError(ChartError):
    """A guard, assigner or other pure function failed during a transition. The
    transition has no effect; ``__cause__`` is the original exception. Codes:
    guard-failed, action-failed, invalid-context, unknown-child."""
