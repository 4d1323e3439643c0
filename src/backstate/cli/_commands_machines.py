"""``backstate machines`` and ``machine-versions``: smply's commands, with Python
machine files where smply takes JavaScript bundles (``migrations``: _commands_migrations)."""

from __future__ import annotations

import argparse

from rich.text import Text

from backstate.client import paginate

from ._app import Commands, Context
from ._args import all_versions, confirm, json_object
from ._files import machine_file
from ._output import plain, when

DEFAULT_VERSION_REFERENCE = "0.0.1"  # smply's


def register(commands: Commands) -> None:
    machines = commands.group("machines", "list, inspect, create and delete machines")
    machines.command(
        "list", "every machine of the org", list_machines, epilog="example: backstate machines list"
    )
    get = machines.command(
        "get",
        "one machine: its indexes and current version",
        get_machine,
        epilog="example: backstate machines get -m orders",
    )
    get.add_argument("-m", "--machine", required=True, help="the machine's name")
    create = machines.command(
        "create",
        "create a machine (with --file, also its first version, made current)",
        create_machine,
        epilog="example: backstate machines create -m toggler --file examples/toggler.py",
    )
    create.add_argument("-m", "--machine", required=True, help="the machine's name")
    create.add_argument("--index", action="append", default=[], help="an index name (repeatable)")
    create.add_argument(
        "-d",
        "--index-selectors",
        type=json_object,
        help='JSON {"index": "$.json.path"}; its keys are indexes too',
    )
    create.add_argument("-f", "--file", help="a machine file (.py) to upload as the first version")
    create.add_argument(
        "-r",
        "--version-reference",
        default=DEFAULT_VERSION_REFERENCE,
        help=f"your name for the version: a semver, a git sha (default {DEFAULT_VERSION_REFERENCE})",
    )
    delete = machines.command(
        "delete",
        "delete a machine, its versions and migrations (not while it has instances)",
        delete_machine,
        epilog="example: backstate machines delete -m orders --yes",
    )
    delete.add_argument("-m", "--machine", required=True, help="the machine's name")
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask to retype the name")

    versions = commands.group("machine-versions", "list and create machine versions")
    listing = versions.command(
        "list",
        "a machine's versions (* is current)",
        list_versions,
        epilog="example: backstate machine-versions list -m orders",
    )
    listing.add_argument("-m", "--machine", required=True, help="the machine's name")
    create_version = versions.command(
        "create",
        "upload a machine file as a new version, made current unless --no-make-current",
        create_version_command,
        epilog="example: backstate machine-versions create -m toggler --file toggler.py -r 1.0.1",
    )
    create_version.add_argument("-m", "--machine", required=True, help="the machine's name")
    create_version.add_argument("-f", "--file", required=True, help="the machine file (.py)")
    create_version.add_argument("-r", "--version-reference", help="your name for the version")
    create_version.add_argument(
        "--make-current",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="new instances start on it (the default; --no-make-current to only upload it)",
    )
    create_version.add_argument(
        "-d",
        "--index-selectors",
        type=json_object,
        help="JSON {index: selector}; default: the file's index_selectors, else the "
        "current version's",
    )


# -- machines ----------------------------------------------------------------------------------


def list_machines(context: Context, args: argparse.Namespace) -> None:
    client = context.client()
    machines = list(paginate(client.machines.list))
    if context.json:
        context.output.document({"machines": machines})
        return
    context.output.table(
        ("machine", "created (UTC)", "current version", "reference"),
        (
            (
                m.slug,
                when(m.created_at),
                m.current_version.id if m.current_version else "-",
                (m.current_version.client_info or "") if m.current_version else "",
            )
            for m in machines
        ),
        empty="no machines yet: backstate machines create -m NAME --file machine.py",
    )


def get_machine(context: Context, args: argparse.Namespace) -> None:
    machine = context.client().machines.get(args.machine)
    if context.json:
        context.output.document({"machine": machine})
        return
    current = machine.current_version
    context.output.fields(
        [
            ("machine", machine.slug or args.machine),
            ("created (UTC)", when(machine.created_at)),
            ("indexes", ", ".join(machine.indexes) or "-"),
            ("current version", current.id if current else "- (none yet)"),
            ("reference", (current.client_info or "") if current else ""),
        ]
    )


def create_machine(context: Context, args: argparse.Namespace) -> None:
    selectors: dict[str, str] | None = args.index_selectors
    source = None
    if args.file:
        source, module = machine_file(args.file)
        if selectors is None:
            selectors = module.index_selectors
    indexes = list(dict.fromkeys([*args.index, *(selectors or {})]))
    client = context.client()
    client.machines.create(args.machine, indexes=indexes)
    version_id = None
    if source is not None:
        with context.output.status(f"uploading {args.file}"):
            version_id = client.machine_versions.create(
                args.machine,
                source,
                client_info=args.version_reference,
                make_current=True,
                index_selectors=selectors,
            )
    if context.json:
        context.output.document(
            {"machine": args.machine, "indexes": indexes, "machineVersionId": version_id}
        )
        return
    context.output.success(f"created machine {args.machine}")
    if version_id is not None:
        context.output.success(
            f"uploaded {args.file} as version {version_id} ({args.version_reference}), current"
        )


def delete_machine(context: Context, args: argparse.Namespace) -> None:
    confirm(
        args.machine, "This deletes the machine, its versions and migrations for good", yes=args.yes
    )
    context.client().machines.delete(args.machine, danger_data_will_be_deleted_forever=True)
    if context.json:
        context.output.document({"deleted": args.machine})
    context.output.success(f"deleted machine {args.machine}")


# -- versions ----------------------------------------------------------------------------------


def list_versions(context: Context, args: argparse.Namespace) -> None:
    client = context.client()
    current = client.machines.get(args.machine).current_version
    current_id = current.id if current else None
    versions = all_versions(client, args.machine)
    if context.json:
        context.output.document(
            {"versions": [{**plain(v), "current": v.id == current_id} for v in versions]}
        )
        return
    context.output.table(
        ("", "version", "reference", "created (UTC)"),
        (
            (
                Text("*", style="green") if v.id == current_id else "",
                v.id,
                v.client_info or "",
                when(v.created_at),
            )
            for v in versions
        ),
        empty=f"machine {args.machine} has no versions yet",
    )


def create_version_command(context: Context, args: argparse.Namespace) -> None:
    source, _ = machine_file(args.file)
    with context.output.status(f"uploading {args.file}"):
        version_id = context.client().machine_versions.create(
            args.machine,
            source,
            client_info=args.version_reference,
            make_current=args.make_current,
            index_selectors=args.index_selectors,
        )
    if context.json:
        context.output.document({"machineVersionId": version_id, "current": args.make_current})
        return
    reference = f" ({args.version_reference})" if args.version_reference else ""
    current = ", current" if args.make_current else ""
    context.output.success(f"uploaded {args.file} as version {version_id}{reference}{current}")
