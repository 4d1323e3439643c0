"""Constructors for built-in actions and guards.

Each returns a plain dict in XState v5's naming (``{"type": "xstate.raise", ...}``), so a
config that spells the same dict out in JSON means the same thing.
"""

from __future__ import annotations

from typing import Any


def assign(assignment: Any) -> dict[str, Any]:
    """Update context: ``assign({"k": value_or_fn})`` or ``assign(fn)`` where ``fn``
    returns a partial context. Functions take ``(context, event)`` or
    ``(context, event, params)``; every property function sees the context as it was
    before this assign."""
    return {"type": "xstate.assign", "assignment": assignment}


def raise_(event: Any, delay: Any = None, id: str | None = None) -> dict[str, Any]:
    """Put an event on the internal queue (or, with a delay, schedule it to self)."""
    return _drop_none({"type": "xstate.raise", "event": event, "delay": delay, "id": id})


def send_to(to: Any, event: Any, delay: Any = None, id: str | None = None) -> dict[str, Any]:
    return _drop_none({"type": "xstate.sendTo", "to": to, "event": event, "delay": delay, "id": id})


def send_parent(event: Any, delay: Any = None, id: str | None = None) -> dict[str, Any]:
    return send_to("#_parent", event, delay, id)


def cancel(send_id: Any) -> dict[str, Any]:
    return {"type": "xstate.cancel", "sendId": send_id}


def log(value: Any = None, label: str | None = None) -> dict[str, Any]:
    return _drop_none({"type": "xstate.log", "value": value, "label": label})


def emit(event: Any) -> dict[str, Any]:
    return {"type": "xstate.emit", "event": event}


def spawn_child(
    src: str, id: str, input: Any = None, system_id: str | None = None
) -> dict[str, Any]:
    return _drop_none(
        {"type": "xstate.spawnChild", "src": src, "id": id, "input": input, "systemId": system_id}
    )


def stop_child(id: Any) -> dict[str, Any]:
    return {"type": "xstate.stopChild", "id": id}


def enqueue_actions(collect: Any) -> dict[str, Any]:
    """``collect(context, event, enqueue)`` (or with ``params`` last) queues actions with
    ``enqueue(action)`` and ``enqueue.assign(...)`` etc., and may test guards with
    ``enqueue.check(guard)``."""
    return {"type": "xstate.enqueueActions", "collect": collect}


def and_(guards: list[Any]) -> dict[str, Any]:
    return {"type": "xstate.and", "guards": list(guards)}


def or_(guards: list[Any]) -> dict[str, Any]:
    return {"type": "xstate.or", "guards": list(guards)}


def not_(guard: Any) -> dict[str, Any]:
    return {"type": "xstate.not", "guard": guard}


def state_in(state_value: Any) -> dict[str, Any]:
    """True while ``"#id"`` is active, or while the snapshot matches a state value."""
    return {"type": "xstate.stateIn", "stateValue": state_value}


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}
