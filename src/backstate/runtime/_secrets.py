"""Per-org secrets for effects: ``backstate.runtime.secret("NAME")`` inside a custom
action or a service (never in guards, assigns or anything else a transition runs, so
transitions stay deterministic and a secret can never land in a snapshot by accident).

Where the values come from is the embedding program's: ``Backstate(secrets=...)`` maps
a machine's name to its secrets (the server: the org's, decrypted, see server/_secrets).
The effect runner makes them reachable around each effect; in sandboxed mode they travel
with the effect's call to its org's effects worker, never to a transition worker.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping

Secrets = Callable[[str], Mapping[str, str]]  # machine name -> its secrets

current_secrets: contextvars.ContextVar[Callable[[], Mapping[str, str]] | None] = (
    contextvars.ContextVar("backstate_secrets", default=None)
)


def secret(name: str) -> str:
    """The secret ``name`` of the machine's org; ``KeyError`` if there is none, and
    ``RuntimeError`` outside a custom action or service."""
    found = current_secrets.get()
    if found is None:
        raise RuntimeError("backstate.runtime.secret() works only in custom actions and services")
    values = found()
    if name not in values:
        raise KeyError(f"no secret {name!r}")
    return values[name]


def no_secrets(machine: str) -> Mapping[str, str]:
    return {}
