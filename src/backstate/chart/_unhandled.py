"""Why an event caused no transition, as plain JSON, and the sentence that says so.

An external event selects no transition when no active state has one for its type, or
when every candidate transition has a guard and each returned false (a guardless
candidate would have been taken). Both are read off the selection tree the engine
already built for that event type in that configuration, so explaining runs no user
code. The third reason, an instance that is done, is the runtime's to tell: the engine
never runs an event on a finished snapshot.

    {"reason": "no-transition" | "guards-false" | "done", "eventType": str,
     "states": [active atomic state paths], "guards": [guard names, guards-false only],
     "accepts": [event types the active states have transitions for]}
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from ._actions import AndGuard, CustomGuard, Guard, NotGuard, OrGuard, StateInGuard
from ._algorithm import selection

if TYPE_CHECKING:
    from ._configuration import Configuration

NO_TRANSITION = "no-transition"
GUARDS_FALSE = "guards-false"
DONE = "done"
# Internal events (timers, done and error events) are not something a caller sends.
_INTERNAL = ("xstate.", "backstate.")


def explain(config: Configuration, event_type: str) -> dict[str, Any]:
    """Why ``event_type`` selected no transition in ``config``."""
    tree = selection(config, event_type).tree
    out: dict[str, Any] = {
        "reason": NO_TRANSITION if tree is None else GUARDS_FALSE,
        "eventType": event_type,
        "states": active_states(config),
        "accepts": accepted(config),
    }
    if tree is not None:
        out["guards"] = list(dict.fromkeys(_guards(tree)))
    return out


def finished(config: Configuration, event_type: str) -> dict[str, Any]:
    """The explanation for an event sent to an instance that is done."""
    return {"reason": DONE, "eventType": event_type, "states": active_states(config)}


def active_states(config: Configuration) -> list[str]:
    return [n.dotted for n in config.atomic if n.parent is not None]


def accepted(config: Configuration) -> list[str]:
    return sorted(
        {
            descriptor
            for node in config.nodes
            for descriptor in node.transitions
            if not descriptor.startswith(_INTERNAL)
        }
    )


def sentence(info: dict[str, Any]) -> str:
    """The explanation as a sentence for people (the CLI prints it, the API sends it)."""
    event = info.get("eventType")
    found = list(info.get("states") or [])
    where = f"state{'s' if len(found) != 1 else ''} {', '.join(found) or '(none)'}"
    head = f"no transition for {event!r} in {where}"
    reason = info.get("reason")
    if reason == DONE:
        return f"{head}: the instance is done"
    if reason == GUARDS_FALSE:
        guards = [repr(g) for g in info.get("guards") or []]
        if len(guards) == 1:
            return f"{head}: guard {guards[0]} returned false"
        return f"{head}: guards {', '.join(guards[:-1])} and {guards[-1]} returned false"
    accepts = list(info.get("accepts") or [])
    verb = "accepts" if len(found) == 1 else "accept"
    text = f"{head}, which {verb} {', '.join(accepts) if accepts else 'no events'}"
    close = difflib.get_close_matches(str(event), accepts, n=1)
    if close:
        text += f" (did you mean {close[0]!r}?)"
    return text


def _guards(tree: Any) -> list[str]:
    _, subs, cands = tree
    names = [label(t.guard) for t in cands if t.guard is not None]
    for sub in subs:
        names.extend(_guards(sub))
    return names


def label(guard: Guard | None) -> str:
    """A guard as written: its name, or its combinators around names."""
    if isinstance(guard, CustomGuard):
        return guard.name
    if isinstance(guard, OrGuard):
        return f"or({', '.join(label(g) for g in guard.guards)})"
    if isinstance(guard, AndGuard):
        return f"and({', '.join(label(g) for g in guard.guards)})"
    if isinstance(guard, NotGuard):
        return f"not({label(guard.guard)})"
    if isinstance(guard, StateInGuard):
        return f"stateIn({guard.state_value!r})"
    return "true" if guard is None else type(guard).__name__


MAX_LISTED = 200  # states, guards or event types one explanation may list
MAX_TEXT = 512  # characters of one of them


def checked(data: Any) -> dict[str, Any]:
    """``data`` if it is an explanation ``explain`` could have made (a sandboxed worker
    sends it: what it sends is not trusted); raises ``ValueError``."""
    if not isinstance(data, dict) or data.get("reason") not in (NO_TRANSITION, GUARDS_FALSE):
        raise ValueError("an explanation of no transition has a reason")
    out: dict[str, Any] = {"reason": data["reason"], "eventType": _text(data.get("eventType"))}
    for key in ("states", "accepts", "guards"):
        if key in data:
            items = data[key]
            if not isinstance(items, list) or len(items) > MAX_LISTED:
                raise ValueError(f"an explanation's {key} is a list of at most {MAX_LISTED}")
            out[key] = [_text(item) for item in items]
    return out


def _text(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ValueError(f"an explanation holds strings of at most {MAX_TEXT} characters")
    return value
