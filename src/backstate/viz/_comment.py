"""The pull-request comment of ``backstate viz --changed-since``: for each machine file
a change touched, its diagram before and after, as GitHub-flavoured markdown whose
``mermaid`` blocks GitHub draws. Pure: the caller reads git and loads the files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

HEADING = "## Machine diagrams"


@dataclass(frozen=True)
class Change:
    """One machine file: its diagram at the base revision and now (None when the file
    did not exist or did not define a machine there), or why it could not be drawn."""

    path: str
    before: str | None
    after: str | None
    problem: str | None = None


def comment(changes: Sequence[Change], base: str) -> str:
    lines = [HEADING, ""]
    if not changes:
        lines.append(f"No machine file changed since `{_code(base)}`.")
        return "\n".join(lines) + "\n"
    for change in changes:
        lines.extend([f"### `{_code(change.path)}`", ""])
        if change.problem is not None:
            lines.extend([f"Cannot draw it: {_code(change.problem)}", ""])
        if change.before == change.after and change.after is not None:
            lines.extend(["The diagram did not change.", ""])
            lines.extend(_block(change.after))
            continue
        for title, text in ((f"Before (`{_code(base)}`)", change.before), ("After", change.after)):
            lines.append(f"**{title}**")
            lines.append("")
            lines.extend(_block(text) if text is not None else ["(no machine)", ""])
    return "\n".join(lines)


def _block(text: str) -> list[str]:
    return ["```mermaid", text.rstrip("\n"), "```", ""]


def _code(text: str) -> str:
    """Inline text that cannot close its backticks, open HTML or mention anyone."""
    return text.replace("`", "'").replace("<", "&lt;").replace("@", "@\u200b").replace("\n", " ")
