"""``backstate dead-letters``: messages between instances that exhausted their retries,
listed and redelivered (the server's ``/dead-letters`` routes, instances.admin)."""

from __future__ import annotations

import argparse

from ._app import Commands, Context
from ._output import compact, when


def register(commands: Commands) -> None:
    dead = commands.group("dead-letters", "messages that exhausted their retries")
    dead.command(
        "list",
        "the org's dead letters, oldest first",
        list_dead_letters,
        epilog="example: backstate dead-letters list --json",
    )
    redeliver = dead.command(
        "redeliver",
        "put a dead letter back in its instance's inbox (and off the list)",
        redeliver_dead_letter,
        epilog="example: backstate dead-letters redeliver --id 12",
    )
    redeliver.add_argument("--id", type=int, required=True, help="from `dead-letters list`")


def list_dead_letters(context: Context, args: argparse.Namespace) -> None:
    letters = context.client().dead_letters.list()
    if context.json:
        context.output.document({"deadLetters": letters})
        return
    context.output.table(
        ("id", "time (UTC)", "from", "to", "event", "attempts", "error"),
        (
            (
                d.id,
                when(d.created_at),
                f"{d.from_machine}/{d.from_instance}" if d.from_machine else d.sender or "",
                f"{d.to_machine}/{d.to_instance}",
                compact(d.event),
                d.attempts,
                d.error,
            )
            for d in letters
        ),
        empty="no dead letters",
    )


def redeliver_dead_letter(context: Context, args: argparse.Namespace) -> None:
    context.client().dead_letters.redeliver(args.id)
    if context.json:
        context.output.document({"redelivered": args.id})
        return
    context.output.success(f"dead letter {args.id} is back in its instance's inbox")
