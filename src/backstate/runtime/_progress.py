"""Streamed progress: a running service publishes partial results with
``backstate.runtime.progress(data)``; its instance's subscribers get them as ``Progress``
(on /rt, ``instance-progress`` messages) while it runs. Progress is not state: it is not
committed, not in the history, never replayed to a later subscriber and lost if nobody
listens; the service's result still arrives as its done event, committed as always.

The service finds where to publish in a context variable, set around it by the effect
runner (in this process) or by the sandbox worker (which sends each one to the server,
where it goes the same way).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._json import encode

MAX_PROGRESS_BYTES = 64_000

current_progress: contextvars.ContextVar[Callable[[Any], None] | None] = contextvars.ContextVar(
    "backstate_progress", default=None
)


@dataclass(frozen=True)
class Progress:
    """A partial result of the service ``invoke_id`` of an instance."""

    machine: str
    name: str
    invoke_id: str
    data: Any
    ts: int  # when it was published (ms)


def progress(data: Any) -> None:
    """Publish ``data`` (JSON, at most 64 kB) to the subscribers of the instance whose
    service is running; only inside a service (``RuntimeError`` elsewhere)."""
    sink = current_progress.get()
    if sink is None:
        raise RuntimeError("backstate.runtime.progress() works only inside a running service")
    sink(data)


def checked(data: Any) -> str:
    """``data``'s JSON text, if it may be published (else ``InvalidRequest``/``ValueError``)."""
    text = encode(data, "progress")
    if len(text.encode()) > MAX_PROGRESS_BYTES:
        raise ValueError(f"progress is limited to {MAX_PROGRESS_BYTES} bytes of JSON")
    return text
