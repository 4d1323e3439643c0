"""Reminder v1 -> v2: "waiting" becomes "pending" (its one-hour timer moves with it)."""

from __future__ import annotations

from typing import Any


def upgrade_state(old_state_path: list[str], context: Any) -> list[str]:
    return ["pending" if name == "waiting" else name for name in old_state_path]


def upgrade_context(
    old_state_paths: list[list[str]], new_state_paths: list[list[str]], context: Any
) -> Any:
    return context
