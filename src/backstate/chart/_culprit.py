"""Which piece of a machine's code raised, read off the traceback of a failed step.

Only failures pay for this: the engine calls user code without wrapping each call, and
when a step fails the frames say which guard or action was running (the innermost
engine frame whose ``self`` is one) and where in the user's file it failed (the first
frame outside the engine).
"""

from __future__ import annotations

import os
import traceback
from types import TracebackType

from ._actions import Action, AssignAction, CustomAction, CustomGuard, EnqueueAction

_ENGINE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_BACKSTATE = os.path.dirname(_ENGINE.rstrip(os.sep)) + os.sep


def culprit(tb: TracebackType | None) -> tuple[str, str]:
    """``(what, where)``: ``guard 'isManager'``, ``assign 'total'`` or ``machine code``,
    and ``file.py:12 in fn`` (``""`` when no frame of user code is on the stack)."""
    what = "machine code"
    where = ""
    for frame, line in traceback.walk_tb(tb):
        code = frame.f_code
        if code.co_filename.startswith(_ENGINE):
            if where:
                continue
            found = _named(frame.f_locals.get("self"))
            if found is not None:
                what = found
        elif not where:
            where = f"{os.path.basename(code.co_filename)}:{line} in {code.co_name}"
    return what, where


def _named(obj: object) -> str | None:
    if isinstance(obj, CustomGuard):
        return f"guard {obj.name!r}"
    if isinstance(obj, CustomAction):
        return f"action {obj.name!r}"
    if isinstance(obj, AssignAction):
        return "an assign" if obj.name is None else f"assign {obj.name!r}"
    if isinstance(obj, EnqueueAction):
        return "an enqueueActions" if obj.name is None else f"enqueueActions {obj.name!r}"
    if isinstance(obj, Action):
        return f"a {type(obj).__name__}"
    return None


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def user_traceback(exc: BaseException) -> str:
    """``exc``'s traceback without backstate's own frames (what the user can act on)."""
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_BACKSTATE)
    ]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    lines.extend(traceback.format_exception_only(exc))
    return "".join(lines).rstrip()
