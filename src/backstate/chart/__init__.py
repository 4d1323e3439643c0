"""backstate.chart: a pure statechart engine with XState v5 semantics.

``transition(snapshot, event)`` returns the next snapshot and the effects to carry out;
the engine itself performs no I/O and reads no clock. See docs/chart.md.
"""

from ._builtins import (
    and_,
    assign,
    cancel,
    emit,
    enqueue_actions,
    log,
    not_,
    or_,
    raise_,
    send_parent,
    send_to,
    spawn_child,
    state_in,
    stop_child,
)
from ._effects import (
    CancelEvent,
    Effect,
    EmitEvent,
    LogMessage,
    RunAction,
    ScheduleEvent,
    SendEvent,
    StartActor,
    StopActor,
)
from ._errors import ChartError, DefinitionError, ExecutionError
from ._machine import Machine, Setup, create_machine, setup, to_event
from ._snapshot import Snapshot

__all__ = [
    "CancelEvent",
    "ChartError",
    "DefinitionError",
    "Effect",
    "EmitEvent",
    "ExecutionError",
    "LogMessage",
    "Machine",
    "RunAction",
    "ScheduleEvent",
    "SendEvent",
    "Setup",
    "Snapshot",
    "StartActor",
    "StopActor",
    "and_",
    "assign",
    "cancel",
    "create_machine",
    "emit",
    "enqueue_actions",
    "log",
    "not_",
    "or_",
    "raise_",
    "send_parent",
    "send_to",
    "setup",
    "spawn_child",
    "state_in",
    "stop_child",
    "to_event",
]
