"""The boundary around every call into user code (guards, actions, context factories,
authorizers, migrations, services, persistent-child names).

Whatever such a call raises, ``BaseException`` included (``SystemExit``,
``KeyboardInterrupt``, a ``CancelledError`` it raised itself, ``RecursionError``,
``MemoryError``), becomes the one ``BackstateError`` that its caller chose, for the work
that made the call and no other; the server's own cancellation of an awaiting task is
the only exception that passes. The traceback goes to the server's log with the
machine, version and instance, and the message (with the exception's type) to the
caller.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from backstate.chart import ChartError
from backstate.chart._culprit import describe as describe
from backstate.chart._culprit import user_traceback as user_traceback

from . import _logs
from ._errors import BackstateError

logger = logging.getLogger("backstate.usercode")

ErrorFactory = Callable[[str, str], BackstateError]  # (code, message) -> error


def cancelled_by_us(exc: BaseException) -> bool:
    """Whether ``exc`` is this task being cancelled (by the runtime or the server),
    rather than a ``CancelledError`` that user code raised itself."""
    if not isinstance(exc, asyncio.CancelledError):
        return False
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop: a thread, where nothing cancels us
        return False
    return task is not None and task.cancelling() > 0


class user_code:
    """Run the block as a call into user code: ``what`` names the code (``allow_write``,
    ``machine code``), ``where`` the machine, version and instance; a failure is raised
    as ``error(code, message)``. Errors of the runtime and the engine raised in the
    block (already coded) pass unchanged. (A class, not a generator: it wraps every
    transition.)"""

    __slots__ = ("code", "error", "what", "where")

    def __init__(
        self,
        what: str,
        where: tuple[str, str, str],
        code: str,
        error: ErrorFactory = BackstateError,
    ) -> None:
        self.what = what
        self.where = where
        self.code = code
        self.error = error

    def __enter__(self) -> None:
        pass

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None or isinstance(exc, BackstateError | ChartError) or cancelled_by_us(exc):
            return
        message = f"{self.what} raised {describe(exc)}"
        text = f"{message}\n{user_traceback(exc)}"
        # The instance's logs (``backstate logs get``) and the server's both get it.
        _logs.capture("error", text)
        logger.warning("%s@%s/%s: %s", *self.where, text)
        failure = self.error(self.code, message)
        # The frames hold the work and its future, which would hold the error.
        traceback.clear_frames(tb)
        raise failure from None


class UserRaised(Exception):
    """What user code raised, carried across a task, thread or process boundary as an
    ordinary exception (asyncio re-raises a ``SystemExit`` or ``KeyboardInterrupt``
    that leaves a task out of the event loop, which would stop the server): the
    exception's type name, message, and ``status_code`` attribute if it has one (the
    HTTP-API mapper answers with it)."""

    def __init__(self, name: str, message: str, status_code: Any = None) -> None:
        super().__init__(f"{name}: {message}" if message else name)
        self.name = name
        self.message = message
        self.status_code = status_code

    @classmethod
    def of(cls, raised: BaseException) -> UserRaised:
        status = getattr(raised, "status_code", None)
        traceback.clear_frames(raised.__traceback__)
        return cls(type(raised).__name__, str(raised), status)


async def call(fn: Callable[[Any], Any], arg: Any) -> Any:
    """``fn(arg)`` of user code: awaited when it is async, else run in a thread (it may
    block); whatever it raises comes out as ``UserRaised`` (but our own cancellation)."""
    if inspect.iscoroutinefunction(fn):
        return await _guarded(fn(arg))
    ok, value = await asyncio.to_thread(_catching, fn, arg)
    if not ok:
        raise UserRaised.of(value)
    if inspect.isawaitable(value):
        return await _guarded(value)
    return value


def _catching(fn: Callable[[Any], Any], arg: Any) -> tuple[bool, Any]:
    try:
        return True, fn(arg)
    except BaseException as exc:  # user code: carried out of the thread as a value
        return False, exc


async def _guarded(awaitable: Awaitable[Any]) -> Any:
    try:
        return await awaitable
    except BaseException as exc:
        if cancelled_by_us(exc):
            raise
        raise UserRaised.of(exc) from None
