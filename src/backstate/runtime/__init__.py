"""backstate.runtime: durable execution of statechart instances on a store.

See docs/runtime.md. ``Backstate`` is the entry point.
"""

from ._backstate import Backstate
from ._clock import Clock, SimulatedClock, SystemClock
from ._cluster import Cluster
from ._deployments import Persistent, instance_ref, persistent
from ._effect_runner import EffectId, current_effect_id
from ._entries import InstanceState
from ._errors import (
    BackstateError,
    Conflict,
    EventRejected,
    Forbidden,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
    Unavailable,
    UserCodeFailed,
    UserCodeTimeout,
)
from ._indexes import STATE_SELECTOR, IndexPage, compile_selectors
from ._logs import log_to_stderr
from ._migrations import MigrationFailed, NoMigrationPath, UpgradeReport
from ._progress import Progress, progress
from ._schedules import cron
from ._secrets import secret
from ._steps import MAX_ATTEMPTS, MAX_CONTEXT_BYTES
from ._usercode import UserRaised
from ._usercode import call as call_user_code


def current_effect() -> EffectId | None:
    """The stable id (``machine/instance/seq/index``) of the effect running now, for
    idempotency keys in actions and services; None outside effects. Its ``attempt`` is
    a retried service's attempt number (from 1; 1 for everything else)."""
    return current_effect_id.get()


__all__ = [
    "MAX_ATTEMPTS",
    "MAX_CONTEXT_BYTES",
    "STATE_SELECTOR",
    "Backstate",
    "BackstateError",
    "Clock",
    "Cluster",
    "Conflict",
    "EventRejected",
    "Forbidden",
    "IdempotencyKeyReused",
    "IndexPage",
    "InstanceState",
    "InvalidRequest",
    "MigrationFailed",
    "NoMigrationPath",
    "NotFound",
    "Persistent",
    "Progress",
    "SimulatedClock",
    "SystemClock",
    "Unavailable",
    "UpgradeReport",
    "UserCodeFailed",
    "UserCodeTimeout",
    "UserRaised",
    "call_user_code",
    "compile_selectors",
    "cron",
    "current_effect",
    "instance_ref",
    "log_to_stderr",
    "persistent",
    "progress",
    "secret",
]
