"""Reading the command line (JSON options, events, times and durations, version
references, confirmations), following list cursors, and the errors a command reports."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from backstate.client import Client, Event, MachineVersionInfo, paginate

T = TypeVar("T")


class CliError(Exception):
    """A command failed: printed as ``error: <message> (<code>)``; exit ``status``."""

    def __init__(self, message: str, code: str, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


class UsageError(CliError):
    def __init__(self, message: str, code: str = "usage") -> None:
        super().__init__(message, code, status=2)


def json_object(text: str) -> dict[str, Any]:
    """An option holding a JSON object (``--context '{"a": 1}'``)."""
    value = json_value(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None


def event(text: str) -> Event:
    """smply's rule: a value starting with ``{`` is a JSON event, anything else a type."""
    if text.lstrip().startswith("{"):
        value = json_object(text)
        if not isinstance(value.get("type"), str):
            raise argparse.ArgumentTypeError('a JSON event needs a "type" string')
        return value
    return text


_DURATION = re.compile(r"^([+-]?)(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)$")
_UNITS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "y": 365 * 86400,
}


def duration(text: str) -> timedelta:
    """``30s``, ``10m``, ``-1h``, ``7d`` (units s, m, h, d, w, y as smply's, and ms)."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration like 10m, 1h or 7d: {text!r}")
    sign = -1 if match.group(1) == "-" else 1
    return timedelta(seconds=sign * float(match.group(2)) * _UNITS[match.group(3)])


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


def moment(text: str, base: datetime | None = None) -> datetime:
    """An ISO-8601 time, or a duration relative to ``base`` (default: now): ``-10m``."""
    try:
        return (base or datetime.now(UTC)) + duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO-8601 time or a relative one like -10m: {text!r}"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def resolve_version(client: Client, machine: str, reference: str) -> str:
    """A version id, given its id or the version reference (``clientInfo``) it was
    created with, if only one version has it."""
    versions = all_versions(client, machine)
    if any(v.id == reference for v in versions):
        return reference
    named = [v.id for v in versions if v.client_info == reference]
    if len(named) == 1:
        return named[0]
    if named:
        raise CliError(
            f"{len(named)} versions of {machine!r} have the reference {reference!r}: "
            f"give an id ({', '.join(named)})",
            "ambiguous-version",
        )
    raise CliError(f"machine {machine!r} has no version {reference!r}", "version-not-found")


def all_versions(client: Client, machine: str) -> list[MachineVersionInfo]:
    return list(paginate(client.machine_versions.list, machine))


def confirm(name: str, consequence: str, *, yes: bool) -> None:
    """smply's confirmation: retype the name (``--yes`` skips it, for scripts)."""
    if yes:
        return
    # The prompt goes to stderr: stdout holds only results (and --json documents).
    sys.stderr.write(f"{consequence}. Type {name!r} to confirm: ")
    sys.stderr.flush()
    typed = sys.stdin.readline()
    if typed.strip() != name:
        raise CliError("not confirmed (type the name, or pass --yes)", "not-confirmed")
