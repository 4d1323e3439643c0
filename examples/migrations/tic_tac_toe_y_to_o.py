"""Migration for tic-tac-toe: the first version named the o side's states "Awaiting y
move" and "Process y move"; this one renames them. Upload it between the two versions
(``POST /machines/{m}/migrations``), then move games over with ``PUT .../i/{i}/v``."""

from __future__ import annotations

from typing import Any

RENAMES = {"Awaiting y move": "Awaiting o move", "Process y move": "Process o move"}


def upgrade_state(old_state_path: list[str], context: Any) -> list[str]:
    return [RENAMES.get(key, key) for key in old_state_path]


def upgrade_context(
    old_state_paths: list[list[str]], new_state_paths: list[list[str]], context: Any
) -> Any:
    return context
