"""What the CLI prints: rich tables and colour for people, JSON for scripts, and the
one-line errors.

Results go to stdout; progress bars, spinners, notes and errors to stderr, so that
``backstate --json ... | jq`` always reads exactly one JSON document (streams, such as
``logs watch``, print one document per line). JSON field names are the client's
dataclass fields in camelCase, as the API names them (a state's ``value`` is ``state``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

PIPED_WIDTH = 200
_RENAMED = {"value": "state"}  # State and AdminState: the API calls it `state`


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def plain(value: Any) -> Any:
    """``value`` as JSON-compatible data: dataclasses become objects with camelCase keys,
    datetimes ISO-8601 strings, sets sorted lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            _RENAMED.get(f.name, camel(f.name)): plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.repr
        }
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, frozenset | set):
        return sorted(plain(v) for v in value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def compact(value: Any) -> str:
    """A state value or context on one line: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(plain(value), ensure_ascii=False)


def when(moment: datetime | None) -> str:
    """A time in UTC, as tables show it (their headers say so: ``created (UTC)``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment is not None else ""


class Output:
    """Where a command's results, notes and progress go."""

    def __init__(self, *, json_mode: bool) -> None:
        self.json_mode = json_mode
        # Piped output is not cut to 80 columns: a table stays one row per line.
        piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
        self.out = Console(highlight=False, width=PIPED_WIDTH if piped else None)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    # -- results ------------------------------------------------------------------------

    def document(self, value: Any) -> None:
        """The command's one JSON document (``--json``)."""
        self.line(json.dumps(plain(value), ensure_ascii=False))

    def line(self, text: str | Text = "", style: str | None = None) -> None:
        """One line as it is (never wrapped, no markup)."""
        self.out.print(
            text, style=style, markup=False, highlight=False, emoji=False, soft_wrap=True
        )

    def piece(self, text: str) -> None:
        """Text with no line end, at once (streamed tokens)."""
        self.out.print(text, end="", markup=False, highlight=False, emoji=False, soft_wrap=True)
        self.out.file.flush()

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[Any]], empty: str) -> None:
        rows = list(rows)
        if not rows:
            self.note(empty)
            return
        table = Table(*columns, header_style="bold", box=None, pad_edge=False)
        for row in rows:
            table.add_row(*(cell if isinstance(cell, Text) else Text(str(cell)) for cell in row))
        self._block(table)

    def fields(self, pairs: Sequence[tuple[str, Any]]) -> None:
        """A record as ``label  value`` lines."""
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        for label, value in pairs:
            grid.add_row(label, value if isinstance(value, Text) else Text(str(value)))
        self._block(grid)

    def _block(self, renderable: Any) -> None:
        if self.out.is_terminal:
            self.out.print(renderable)
            return
        # Piped: without the padding rich gives the last column, so lines end cleanly.
        with self.out.capture() as captured:
            self.out.print(renderable)
        sys.stdout.write("".join(f"{line.rstrip()}\n" for line in captured.get().splitlines()))
        sys.stdout.flush()

    # -- notes, warnings and errors (stderr) -------------------------------------------------

    def note(self, text: str) -> None:
        self.err.print(Text(text, style="dim"))

    def success(self, text: str) -> None:
        """A confirmation for people; in ``--json`` mode the document says it."""
        if not self.json_mode:
            self.out.print(Text(text, style="green"))

    def warn(self, text: str) -> None:
        self.err.print(Text(f"warning: {text}", style="yellow"))

    def error(self, message: str, code: str) -> None:
        self.err.print(Text(f"error: {message} ({code})", style="red"))

    # -- progress ----------------------------------------------------------------------------

    @contextmanager
    def progress(self, description: str, total: float, *, items: bool = True) -> Iterator[Step]:
        """A progress bar on the terminal, if there is one: on stdout (so that results
        printed meanwhile appear above it), else on stderr; none when both are piped.
        With ``items``, it shows how many of ``total`` are done, else the percentage."""
        columns = [TextColumn("{task.description}"), BarColumn()]
        columns.append(MofNCompleteColumn() if items else TaskProgressColumn())
        columns.append(TimeElapsedColumn())
        console = self.out if self.out.is_terminal else self.err
        with Progress(
            *columns,
            console=console,
            transient=True,
            disable=not console.is_terminal,
            redirect_stdout=False,
            redirect_stderr=False,
        ) as bar:
            task = bar.add_task(description, total=total)
            yield Step(bar, task)

    @contextmanager
    def status(self, text: str) -> Iterator[None]:
        """A spinner on stderr while something runs (an upload, a deploy)."""
        if self.err.is_terminal:
            with self.err.status(text):
                yield
        else:
            yield


class Step:
    def __init__(self, bar: Progress, task: Any) -> None:
        self._bar = bar
        self._task = task

    def advance(self, amount: float = 1) -> None:
        self._bar.advance(self._task, amount)

    def update(self, *, completed: float | None = None, description: str | None = None) -> None:
        self._bar.update(self._task, completed=completed, description=description)
