"""``backstate check FILE``: load a machine or migration file exactly as an upload would
(trusted loading, here: the same loader a server and its sandboxed workers use), report
what is wrong with ``file:line`` (and the state path, for definition errors), and list
the events each state accepts. For editors and CI: exit status 1 on any problem."""

from __future__ import annotations

import argparse
from pathlib import Path

from backstate.chart._unhandled import _INTERNAL
from backstate.machine import load_file
from backstate.machine._loader import MachineModule, definition, load_migration_source

from ._app import Commands, Context
from ._args import CliError


def register(commands: Commands) -> None:
    check = commands.top(
        "check",
        "load a machine or migration file as an upload would and list what each state accepts",
        check_file,
        common=False,
    )
    check.epilog = "example: backstate check machines/purchase_order.py"
    check.add_argument("file", metavar="FILE", help="a machine file, or a migration file")
    check.add_argument("--json", action="store_true", help="print JSON, for scripts")


def check_file(context: Context, args: argparse.Namespace) -> None:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"no file {path}", "file-not-found")
    source = path.read_text(encoding="utf-8")
    if "def upgrade_state" in source and "machine" not in _names(source):
        load_migration_source(source, str(path))
        if context.json:
            context.output.document({"file": str(path), "kind": "migration"})
        else:
            context.output.success(f"{path}: a migration (upgrade_state, upgrade_context)")
        return
    module = load_file(path)
    definition(module)  # what an upload stores about it: its skeleton and outline
    accepts = accepted_events(module)
    if context.json:
        context.output.document({"file": str(path), "kind": "machine", "states": accepts})
        return
    context.output.success(f"{path}: machine {module.machine.root.id!r}, {len(accepts)} states")
    context.output.table(
        ("state", "accepts"),
        [(state, ", ".join(events) or "(nothing)") for state, events in accepts.items()],
        "no states",
    )


def accepted_events(module: MachineModule) -> dict[str, list[str]]:
    """Each leaf state (by path) and the event types it, or an ancestor, has a
    transition for (``final`` for a final state)."""
    out: dict[str, list[str]] = {}
    pending = [module.machine.root]
    while pending:
        node = pending.pop()
        if node.children:
            pending.extend(reversed(list(node.children.values())))
            continue
        if node.type == "history":
            continue
        if node.type == "final":
            out[node.dotted] = ["(final)"]
            continue
        events = {
            descriptor
            for owner in (node, *node.proper_ancestors())
            for descriptor in owner.transitions
            if not descriptor.startswith(_INTERNAL)
        }
        out[node.dotted] = sorted(events)
    return out


def _names(source: str) -> set[str]:
    """Top-level names a file assigns (``machine = ...``), without running it."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {"machine"}  # let the machine loader report it with its line
    return {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
