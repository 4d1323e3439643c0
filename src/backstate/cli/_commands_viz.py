"""``backstate viz``: a machine file drawn as mermaid, SVG or PNG, or the diagrams of
every machine file a git change touched, as a pull-request comment."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

from backstate.chart import ChartError, Machine
from backstate.machine import MachineModuleError, load_source
from backstate.viz import outline, to_mermaid
from backstate.viz._comment import Change, comment
from backstate.viz._render import FORMATS, RenderError, render

from ._app import Commands, Context
from ._args import CliError, UsageError
from ._files import machine_file

_MACHINE_FILE = re.compile(r"^machine\s*(:[^=]*)?=", re.MULTILINE)


def register(commands: Commands) -> None:
    viz = commands.top(
        "viz",
        "draw a machine file as a statechart (mermaid stateDiagram-v2, SVG or PNG), or "
        "the before/after diagrams of the machine files changed since a git revision",
        run_viz,
        epilog="example: backstate viz machines/orders.py --format svg -o orders.svg",
        common=False,
    )
    viz.add_argument("file", nargs="?", help="the machine file")
    viz.add_argument(
        "--format",
        choices=("mermaid", *FORMATS),
        help="what to write (default: from --output's suffix, else mermaid)",
    )
    viz.add_argument("-o", "--output", help="write here (default: standard output)")
    viz.add_argument(
        "--state",
        help='highlight this configuration: a state value as JSON (\'{"a": "b"}\') or '
        "a dotted path (a.b)",
    )
    viz.add_argument(
        "--changed-since",
        metavar="REV",
        help="print a markdown comment with the diagrams, before and after, of every "
        "machine file changed since REV (e.g. origin/main)",
    )


def run_viz(context: Context, args: argparse.Namespace) -> int:
    if args.changed_since is not None:
        if args.file or args.state or args.format:
            raise UsageError("--changed-since takes no FILE, --state or --format")
        _write(args.output, comment(_changes(args.changed_since), args.changed_since).encode())
        return 0
    if not args.file:
        raise UsageError("give a machine FILE, or --changed-since REV")
    _, module = machine_file(args.file)
    active = _active(module.machine, args.state) if args.state else []
    text = to_mermaid(outline(module.machine), active)
    fmt = args.format or _format_of(args.output)
    if fmt == "mermaid":
        _write(args.output, text.encode())
        return 0
    if args.output is None and sys.stdout.isatty() and fmt == "png":
        raise UsageError("PNG goes to a file: give --output FILE.png")
    try:
        _write(args.output, render(text, fmt))
    except RenderError as exc:
        raise CliError(exc.message, exc.code) from None
    return 0


def _format_of(output: str | None) -> str:
    suffix = Path(output).suffix.lower().lstrip(".") if output else ""
    return suffix if suffix in FORMATS else "mermaid"


def _active(machine: Machine, state: str) -> list[str]:
    value: object
    try:
        value = json.loads(state)
    except json.JSONDecodeError:
        value = state
    if isinstance(value, str) and "." in value:
        value = _nest(value.split("."))
    try:
        snapshot = machine.resolve_snapshot({"value": value})
    except ChartError as exc:
        raise CliError(f"--state: {exc.message}", "invalid-state") from None
    return [node.id for node in snapshot.configuration.nodes]


def _nest(keys: list[str]) -> object:
    value: object = keys[-1]
    for key in reversed(keys[:-1]):
        value = {key: value}
    return value


def _write(output: str | None, data: bytes) -> None:
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        Path(output).write_bytes(data)


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise CliError("git is not installed", "git-failed") from None
    if done.returncode != 0:
        raise CliError(f"git {' '.join(args)}: {done.stderr.strip()}", "git-failed")
    return done.stdout


def _changes(base: str) -> list[Change]:
    """Each Python file that differs between ``base`` and the working tree and defines a
    machine on either side. Paths are the repository's, whatever the current folder."""
    _git("rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")
    top = Path(_git("rev-parse", "--show-toplevel").strip())
    names = _git("diff", "--name-only", "--no-renames", base, "--", "*.py").split("\n")
    untracked = _git("ls-files", "--others", "--exclude-standard", "--", "*.py").split("\n")
    cwd = Path.cwd().resolve()
    prefix = _git("rev-parse", "--show-prefix").strip()
    paths = sorted({n for n in names if n} | {prefix + n for n in untracked if n})
    changes = []
    for path in paths:
        file = top / path
        before_source = _show(base, path)
        after_source = file.read_text(encoding="utf-8") if file.is_file() else None
        before, problem_before = _diagram(before_source, f"{path}@{base}")
        after, problem_after = _diagram(after_source, path)
        if before is None and after is None and not (problem_before or problem_after):
            continue  # not a machine file on either side
        shown = str(file.relative_to(cwd)) if file.is_relative_to(cwd) else path
        changes.append(Change(shown, before, after, problem_after or problem_before))
    return changes


def _show(base: str, path: str) -> str | None:
    done = subprocess.run(
        ["git", "show", f"{base}:{path}"], capture_output=True, text=True, check=False
    )
    return done.stdout if done.returncode == 0 else None


def _diagram(source: str | None, filename: str) -> tuple[str | None, str | None]:
    if source is None or not _MACHINE_FILE.search(source):
        return None, None  # not run: only files that assign `machine` at top level are
    try:
        module = load_source(source, filename)
    except MachineModuleError as exc:
        if exc.code == "missing-export":
            return None, None
        return None, str(exc)
    return to_mermaid(outline(module.machine)), None
