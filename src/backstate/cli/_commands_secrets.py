"""``backstate secrets``: the org's secrets for its machines' actions and services (the
server's ``/secrets`` routes, org.secrets.admin). A value is read from stdin, never from
the command line (which other users of the host can see)."""

from __future__ import annotations

import argparse
import sys

from ._app import Commands, Context


def register(commands: Commands) -> None:
    secrets = commands.group("secrets", "the org's secrets (for actions and services)")
    set_ = secrets.command(
        "set",
        "set a secret to the value on stdin (one trailing newline is dropped)",
        set_secret,
        epilog='example: printf %s "$OPENAI_API_KEY" | backstate secrets set OPENAI_API_KEY',
    )
    set_.add_argument("name", metavar="NAME", help="the secret's name (actions read it by name)")
    secrets.command(
        "list",
        "the names of the org's secrets (never their values)",
        list_secrets,
        epilog="example: backstate secrets list",
    )
    delete = secrets.command(
        "delete",
        "delete a secret",
        delete_secret,
        epilog="example: backstate secrets delete STRIPE_KEY",
    )
    delete.add_argument("name", metavar="NAME", help="the secret's name")


def set_secret(context: Context, args: argparse.Namespace) -> None:
    value = sys.stdin.read()
    value = value[:-1] if value.endswith("\n") else value
    context.client().secrets.set(args.name, value)
    if context.json:
        context.output.document({"set": args.name})
        return
    context.output.success(f"secret {args.name} set")


def list_secrets(context: Context, args: argparse.Namespace) -> None:
    names = context.client().secrets.list()
    if context.json:
        context.output.document({"secrets": names})
        return
    context.output.table(("name",), ((n,) for n in names), empty="no secrets")


def delete_secret(context: Context, args: argparse.Namespace) -> None:
    context.client().secrets.delete(args.name)
    if context.json:
        context.output.document({"deleted": args.name})
        return
    context.output.success(f"secret {args.name} deleted")
