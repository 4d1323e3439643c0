"""The ``after`` timers of an upgraded instance: which it keeps, cancels, moves and arms.

An ``after`` timer belongs to a state (its id is ``xstate.after.<delay>.<state id>``) and
is armed when the state is entered. An upgrade enters no state, so without this a state
that a migration renamed would wait forever: its old timer is cancelled with the old
state and the new one is never armed. So, after an upgrade:

* a pending timer of a state that is still active (the same id) is kept as it is;
* a pending timer of a state no longer active is cancelled, unless a state that became
  active has a timer of the same delay: the migration mapped the one to the other, and
  the timer moves to the new state with its original due time;
* every other timer of a state that became active is armed, due after its delay.

States active both before and after are never re-armed: their timers that fired already
(a guard let the state stay) fire once, as in XState. ``after_timers`` runs with the
target version's code (a named delay may be a function of the context); the rest is
plain data, so the dry run reports the same plan the upgrade carries out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backstate.chart import Snapshot
from backstate.chart._actions import RaiseAction
from backstate.chart._macrostep import Run

AFTER = "xstate.after."
MAX_TIMERS = 1000  # after timers an upgraded snapshot may have (a worker sends them)


def after_timers(snapshot: Snapshot) -> list[tuple[str, int]]:
    """``(timer id, delay ms)`` of every ``after`` transition of the active states."""
    run = Run(
        snapshot.machine,
        snapshot.configuration,
        snapshot.context,
        snapshot.history,
        snapshot.children,
        {"type": "statebacked.upgrade"},
    )
    out: list[tuple[str, int]] = []
    for node in snapshot.configuration.nodes:
        for action in node.entry:
            if isinstance(action, RaiseAction) and action.id in node.after_events:
                delay = run.resolve_delay(action.delay, None)
                out.append((action.id, delay or 0))
    return out


def checked_timers(data: Any) -> list[tuple[str, int]]:
    """``after_timers`` as a sandboxed worker sent them; raises ``ValueError``."""
    if not isinstance(data, list) or len(data) > MAX_TIMERS:
        raise ValueError(f"the timers are a list of at most {MAX_TIMERS}")
    out: list[tuple[str, int]] = []
    for item in data:
        if not (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and item[0].startswith(AFTER)
            and len(item[0]) <= 1024
            and isinstance(item[1], int)
            and not isinstance(item[1], bool)
            and 0 <= item[1] < 2**53
        ):
            raise ValueError("a timer is [an xstate.after. id, a delay in ms]")
        out.append((item[0], item[1]))
    return out


@dataclass
class TimerPlan:
    """What an upgrade does to the instance's timers: ids kept; ids cancelled; ids
    armed with their due times (ms); and moved ``(old id, new id)`` pairs (also in
    ``cancelled`` and ``armed``: the new id is armed at the old due time)."""

    kept: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    armed: list[tuple[str, int]] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)

    def warnings(self) -> list[str]:
        """One line per timer the upgrade changes, for the dry run."""
        moved_from = dict(self.moved)
        moved_to = {new for _, new in self.moved}
        lines = [f"timer {t} is cancelled" for t in self.cancelled if t not in moved_from]
        lines += [f"timer {old} moves to {new}, due as before" for old, new in self.moved]
        lines += [
            f"timer {t} is armed, due in {_delay(t)}" for t, _ in self.armed if t not in moved_to
        ]
        return lines


def plan_timers(
    pending: dict[str, int],
    before: set[str],
    wanted: list[tuple[str, int]],
    now: int,
) -> TimerPlan:
    """``pending``: the instance's ``after`` timers (id -> due ms); ``before``: the ids
    of the states active before the upgrade; ``wanted``: ``after_timers`` of the
    upgraded snapshot."""
    plan = TimerPlan()
    wanted_ids = {timer for timer, _ in wanted}
    orphans = [t for t in pending if t not in wanted_ids]
    for timer, delay in wanted:
        if timer in pending:
            plan.kept.append(timer)
            continue
        if _state_id(timer) in before:
            continue  # its state stayed active and its timer fired already
        match = next((t for t in orphans if _delay_key(t) == _delay_key(timer)), None)
        if match is not None:
            orphans.remove(match)
            plan.cancelled.append(match)
            plan.moved.append((match, timer))
            plan.armed.append((timer, pending[match]))
        else:
            plan.armed.append((timer, now + delay))
    plan.cancelled.extend(orphans)
    return plan


def _delay_key(timer: str) -> str:
    return timer[len(AFTER) :].split(".", 1)[0]


def _state_id(timer: str) -> str:
    parts = timer[len(AFTER) :].split(".", 1)
    return parts[1] if len(parts) == 2 else ""


def _delay(timer: str) -> str:
    key = _delay_key(timer)
    return f"{key} ms" if key.isdigit() else f"its delay {key!r}"
