"""``backstate migrations``: create (smply's), and list, get and delete (backstate's:
a migration uploaded with a mistake is deleted, then uploaded again)."""

from __future__ import annotations

import argparse

from ._app import Commands, Context
from ._args import confirm, resolve_version
from ._files import migration_file
from ._output import plain, when


def register(commands: Commands) -> None:
    migrations = commands.group("migrations", "upload migrations between versions")
    migration = migrations.command(
        "create",
        "upload a migration file (upgrade_state, upgrade_context) from one version to another",
        create_migration,
        epilog="example: backstate migrations create -m tic-tac-toe --from 1.0.0 --to 1.1.0 "
        "--file examples/migrations/tic_tac_toe_y_to_o.py",
    )
    migration.add_argument("-m", "--machine", required=True, help="the machine's name")
    migration.add_argument(
        "--from", dest="from_version", required=True, help="version id or reference"
    )
    migration.add_argument("--to", dest="to_version", required=True, help="version id or reference")
    migration.add_argument("-f", "--file", required=True, help="the migration file (.py)")

    listing = migrations.command(
        "list",
        "a machine's migrations, oldest first",
        list_migrations,
        epilog="example: backstate migrations list -m tic-tac-toe",
    )
    listing.add_argument("-m", "--machine", required=True, help="the machine's name")
    get = migrations.command(
        "get",
        "one migration, with its code",
        get_migration,
        epilog="example: backstate migrations get -m tic-tac-toe --id mig_...",
    )
    get.add_argument("-m", "--machine", required=True, help="the machine's name")
    get.add_argument("--id", required=True, help="the migration's id (mig_...)")
    delete = migrations.command(
        "delete",
        "delete a migration: upgrades no longer use it (then upload a corrected one)",
        delete_migration,
        epilog="example: backstate migrations delete -m tic-tac-toe --id mig_... --yes",
    )
    delete.add_argument("-m", "--machine", required=True, help="the machine's name")
    delete.add_argument("--id", required=True, help="the migration's id (mig_...)")
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask to retype the id")


def create_migration(context: Context, args: argparse.Namespace) -> None:
    source = migration_file(args.file)
    client = context.client()
    from_id = resolve_version(client, args.machine, args.from_version)
    to_id = resolve_version(client, args.machine, args.to_version)
    with context.output.status(f"uploading {args.file}"):
        migration_id = client.migrations.create(args.machine, from_id, to_id, source)
    if context.json:
        context.output.document(
            {
                "machineVersionMigrationId": migration_id,
                "fromMachineVersionId": from_id,
                "toMachineVersionId": to_id,
            }
        )
        return
    context.output.success(f"uploaded migration {migration_id} from {from_id} to {to_id}")


def list_migrations(context: Context, args: argparse.Namespace) -> None:
    migrations = context.client().migrations.list(args.machine)
    if context.json:
        context.output.document({"migrations": migrations})
        return
    context.output.table(
        ("migration", "from", "to", "created (UTC)"),
        ((m.id, m.from_version_id, m.to_version_id, when(m.created_at)) for m in migrations),
        empty=f"no migrations of {args.machine} yet: backstate migrations create -m "
        f"{args.machine} --from VERSION --to VERSION --file migration.py",
    )


def get_migration(context: Context, args: argparse.Namespace) -> None:
    migration = context.client().migrations.get(args.machine, args.id)
    if context.json:
        context.output.document({"migration": {**plain(migration), "code": migration.code}})
        return
    context.output.fields(
        [
            ("migration", migration.id),
            ("from", migration.from_version_id),
            ("to", migration.to_version_id),
            ("created (UTC)", when(migration.created_at)),
        ]
    )
    context.output.line(migration.code or "")


def delete_migration(context: Context, args: argparse.Namespace) -> None:
    confirm(args.id, f"Upgrades of {args.machine} will no longer use {args.id}", yes=args.yes)
    context.client().migrations.delete(args.machine, args.id)
    if context.json:
        context.output.document({"deleted": args.id})
        return
    context.output.success(f"deleted migration {args.id} of {args.machine}")
