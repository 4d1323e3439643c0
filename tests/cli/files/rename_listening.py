"""Greeter v1 -> v2: "listening" becomes "ready". An instance whose context says
``fail`` cannot be migrated (to test a failing upgrade)."""

from __future__ import annotations

from typing import Any


def upgrade_state(old_state_path: list[str], context: Any) -> list[str]:
    return ["ready" if name == "listening" else name for name in old_state_path]


def upgrade_context(
    old_state_paths: list[list[str]], new_state_paths: list[list[str]], context: Any
) -> Any:
    if context.get("fail"):
        raise ValueError("this instance cannot be migrated")
    return context
