"""``backstate indexes``: add an index to an existing machine (its instances are
backfilled in the background), and see each index's state and progress (backstate's;
smply declares indexes only with ``machines create``)."""

from __future__ import annotations

import argparse

from backstate.client import IndexInfo

from ._app import Commands, Context
from ._output import plain, when


def register(commands: Commands) -> None:
    indexes = commands.group("indexes", "add indexes to existing machines, follow their backfill")
    add = indexes.command(
        "add",
        "add an index to a machine; its existing instances are indexed in the background",
        add_index,
        epilog="example: backstate indexes add -m orders --index total --selector '$.total' --wait",
    )
    add.add_argument("-m", "--machine", required=True, help="the machine's name")
    add.add_argument("--index", required=True, help="the new index's name")
    add.add_argument(
        "--selector",
        required=True,
        help="what it indexes: a JSONPath into the context ($.total), or @state",
    )
    add.add_argument(
        "--wait",
        action="store_true",
        help="wait until every existing instance is indexed, showing the progress",
    )
    listing = indexes.command(
        "list",
        "a machine's indexes, with the state and progress of each backfill",
        list_indexes,
        epilog="example: backstate indexes list -m orders",
    )
    listing.add_argument("-m", "--machine", required=True, help="the machine's name")
    get = indexes.command(
        "get",
        "one index: its selector, state (backfilling, ready, failed) and progress",
        get_index,
        epilog="example: backstate indexes get -m orders --index total",
    )
    get.add_argument("-m", "--machine", required=True, help="the machine's name")
    get.add_argument("--index", required=True, help="the index's name")


def _progress(index: IndexInfo) -> str:
    if index.done is None:
        return "-"
    text = f"{index.done}/{index.total}"
    return f"{text} ({index.skipped} skipped)" if index.skipped else text


def add_index(context: Context, args: argparse.Namespace) -> int:
    client = context.client()
    index = client.indexes.add(args.machine, args.index, args.selector)
    if args.wait:
        with context.output.status(f"backfilling {args.index} of {args.machine}"):
            index = client.indexes.wait_ready(args.machine, args.index)
    if context.json:
        context.output.document({"index": plain(index)})
    elif index.state == "failed":
        context.output.line(f"index {args.index} failed: {index.error}")
    else:
        context.output.success(
            f"index {args.index} of {args.machine}: {index.state}, {_progress(index)} instances"
        )
    return 1 if index.state == "failed" else 0


def list_indexes(context: Context, args: argparse.Namespace) -> None:
    indexes = context.client().indexes.list(args.machine)
    if context.json:
        context.output.document({"indexes": indexes})
        return
    context.output.table(
        ("index", "state", "selector", "progress", "added (UTC)"),
        (
            (
                i.name,
                i.state,
                i.selector or "(its versions')",
                _progress(i),
                when(i.created_at) if i.created_at else "-",
            )
            for i in indexes
        ),
        empty=f"no indexes on {args.machine} yet: backstate indexes add -m {args.machine} "
        "--index NAME --selector '$.path'",
    )


def get_index(context: Context, args: argparse.Namespace) -> int:
    index = context.client().indexes.get(args.machine, args.index)
    if context.json:
        context.output.document({"index": plain(index)})
    else:
        context.output.fields(
            [
                ("index", index.name),
                ("state", index.state),
                ("selector", index.selector or "(its versions')"),
                ("progress", _progress(index)),
                ("first skipped", index.skip_note or "-"),
                ("error", index.error or "-"),
            ]
        )
    return 1 if index.state == "failed" else 0
