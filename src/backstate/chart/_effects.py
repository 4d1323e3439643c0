"""Effects: what a transition asks its caller to do once the new snapshot is committed.

Effects are plain slotted dataclasses (treat them as immutable; they are not frozen
because frozen dataclasses cost a third of a hot transition to construct). The engine
never performs them. The durable runtime runs them after commit; the
in-memory runner in ``backstate.testing`` runs them right after each macrostep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Event = dict[str, Any]


@dataclass(slots=True)
class RunAction:
    """Call the custom action ``fn`` (with ``context`` and ``event`` as they were when
    the action was reached in the macrostep)."""

    name: str
    params: Any
    context: Any
    event: Event
    fn: Callable[..., Any]
    takes_params: bool

    def run(self) -> Any:
        if self.takes_params:
            return self.fn(self.context, self.event, self.params)
        return self.fn(self.context, self.event)


@dataclass(slots=True)
class StartActor:
    """Start an invoked or spawned actor. ``logic`` is the implementation from
    ``setup(actors=...)`` (a callable or a Machine), or None if only the name is known."""

    id: str
    src: str
    input: Any
    system_id: str | None
    kind: Literal["invoke", "spawn"]
    logic: Any
    retry: dict[str, Any] | None = None  # the invoke's retry policy (see _policies)
    timeout_ms: int | None = None  # how long one attempt may run (else the step timeout)


@dataclass(slots=True)
class StopActor:
    id: str


@dataclass(slots=True)
class ScheduleEvent:
    """Deliver ``event`` to ``to`` after ``delay_ms``. ``id`` (if any) is what
    CancelEvent refers to; ``"#_self"`` is the machine itself."""

    id: str | None
    event: Event
    delay_ms: int
    to: str


@dataclass(slots=True)
class CancelEvent:
    id: str


@dataclass(slots=True)
class SendEvent:
    """Deliver ``event`` now to a child id, ``"#_parent"`` or ``"#_self"``."""

    to: str
    event: Event


@dataclass(slots=True)
class EmitEvent:
    event: Event


@dataclass(slots=True)
class LogMessage:
    label: str | None
    value: Any


Effect = (
    RunAction
    | StartActor
    | StopActor
    | ScheduleEvent
    | CancelEvent
    | SendEvent
    | EmitEvent
    | LogMessage
)
