"""Service policies: how an invoked service is retried and how long an attempt may run.

An invoke may say ``retry: {attempts, initial_ms, factor, max_ms, jitter}`` and
``timeout_ms``; the machine's root config may give defaults for every invoke under
``invokeDefaults: {retry, timeout_ms}``. The engine only checks them and carries them on
the ``StartActor`` effect; the durable runtime does the retrying (runtime/_retries). One
checker serves the definition and the server, which checks what a sandbox worker says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_ATTEMPTS = 100
MAX_DELAY_MS = 24 * 3600 * 1000  # a retry waits at most a day
MAX_TIMEOUT_MS = 3600 * 1000  # an attempt runs at most an hour
RETRY_DEFAULTS = {"initial_ms": 1000, "factor": 2.0, "max_ms": 60_000, "jitter": 0.0}


class PolicyError(ValueError):
    pass


def check_retry(value: Any) -> dict[str, Any] | None:
    """A retry policy with every field, or None (no retries); ``PolicyError`` if bad."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise PolicyError("'retry' must be an object")
    unknown = set(value) - {"attempts", *RETRY_DEFAULTS}
    if unknown:
        raise PolicyError(f"'retry' has unknown fields {sorted(unknown)}")
    policy = {**RETRY_DEFAULTS, **value}
    attempts = policy.get("attempts")
    if (
        not isinstance(attempts, int)
        or isinstance(attempts, bool)
        or not 1 <= attempts <= MAX_ATTEMPTS
    ):
        raise PolicyError(f"'retry.attempts' must be an integer from 1 to {MAX_ATTEMPTS}")
    for name in ("initial_ms", "max_ms"):
        if not _integer(policy[name]) or not 0 <= policy[name] <= MAX_DELAY_MS:
            raise PolicyError(f"'retry.{name}' must be an integer from 0 to {MAX_DELAY_MS}")
    factor, jitter = policy["factor"], policy["jitter"]
    if not _number(factor) or not 1 <= factor <= 10:
        raise PolicyError("'retry.factor' must be a number from 1 to 10")
    if not _number(jitter) or not 0 <= jitter <= 1:
        raise PolicyError("'retry.jitter' must be a number from 0 to 1")
    return {**policy, "factor": float(factor), "jitter": float(jitter)}


def check_timeout(value: Any) -> int | None:
    if value is None:
        return None
    if not _integer(value) or not 1 <= value <= MAX_TIMEOUT_MS:
        raise PolicyError(f"'timeout_ms' must be an integer from 1 to {MAX_TIMEOUT_MS}")
    return int(value)


def invoke_policy(
    invoke: Mapping[str, Any], defaults: Any
) -> tuple[dict[str, Any] | None, int | None]:
    """An invoke's (retry, timeout_ms), its own or else the machine's defaults."""
    if defaults is not None and not isinstance(defaults, Mapping):
        raise PolicyError("'invokeDefaults' must be an object")
    defaults = defaults or {}
    unknown = set(defaults) - {"retry", "timeout_ms"}
    if unknown:
        raise PolicyError(f"'invokeDefaults' has unknown fields {sorted(unknown)}")
    retry = invoke["retry"] if "retry" in invoke else defaults.get("retry")
    timeout = invoke["timeout_ms"] if "timeout_ms" in invoke else defaults.get("timeout_ms")
    return check_retry(retry), check_timeout(timeout)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value
