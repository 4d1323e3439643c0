"""The ``backstate`` command: the parser, the options every command shares, the client
a command talks through, and how failures become one line and an exit status.

Exit status: 0 done, 1 the command failed (``error: <message> (<code>)`` on stderr),
2 the command line was wrong, 130 interrupted.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from backstate.client import (
    DEFAULT_API_HOST,
    ApiError,
    Client,
    Credentials,
    KeyAuth,
    Unreachable,
    default_credentials_path,
    load_credentials,
)
from backstate.machine import MachineModuleError

from ._args import CliError, UsageError
from ._output import Output

Run = Callable[["Context", argparse.Namespace], int | None]
JSON_ERROR = "not valid JSON"


class Parser(argparse.ArgumentParser):
    """argparse, with its errors raised as ``UsageError`` (one line, exit 2)."""

    def error(self, message: str) -> NoReturn:
        code = "invalid-json" if JSON_ERROR in message else "usage"
        raise UsageError(f"{self.prog}: {message}", code)


def _common_options() -> Parser:
    """Options every API command takes, before or after the command's name. Their
    defaults are suppressed so that one given before the command is not reset after."""
    common = Parser(add_help=False)
    group = common.add_argument_group("connection and output")
    hidden = argparse.SUPPRESS
    group.add_argument(
        "--api-host", default=hidden, help="the API (default: the credentials file's apiHost)"
    )
    group.add_argument("--org", default=hidden, help="org id (x-statebacked-org-id)")
    group.add_argument("--key-id", default=hidden, help="sign tokens with this key...")
    group.add_argument("--secret", default=hidden, help="...and this secret")
    group.add_argument("--token", default=hidden, help="send this token instead of signing one")
    group.add_argument(
        "--json", action="store_true", default=hidden, help="print JSON, for scripts"
    )
    return common


class Commands:
    """Where command modules add their groups (``machines``) and commands (``list``)."""

    def __init__(self, root: Parser) -> None:
        self.common = _common_options()
        self._groups = root.add_subparsers(dest="group", required=True, metavar="COMMAND")

    def top(
        self, name: str, help: str, run: Run, *, epilog: str | None = None, common: bool = True
    ) -> Parser:
        """A command without a group (``serve``, ``dev``)."""
        parser: Parser = self._groups.add_parser(
            name,
            help=help,
            description=help,
            epilog=epilog,
            parents=[self.common] if common else [],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.set_defaults(run=run)
        return parser

    def group(self, name: str, help: str) -> Group:
        parser = self._groups.add_parser(name, help=help, description=help)
        return Group(self, parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))


class Group:
    def __init__(self, commands: Commands, subparsers: Any) -> None:
        self._commands = commands
        self._subparsers = subparsers

    def command(self, name: str, help: str, run: Run, *, epilog: str | None = None) -> Parser:
        parser: Parser = self._subparsers.add_parser(
            name,
            help=help,
            description=help,
            epilog=epilog,
            parents=[self._commands.common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.set_defaults(run=run)
        return parser


class Context:
    """What a command works with: its output, and a client configured from the
    credentials file (``$BACKSTATE_HOME/credentials.json``, else
    ``~/.backstate/credentials.json``, as ``backstate serve`` writes it) and the
    ``--api-host``, ``--org``, ``--key-id``/``--secret`` and ``--token`` options."""

    def __init__(self, args: argparse.Namespace, output: Output) -> None:
        self.args = args
        self.output = output
        self._client: Client | None = None
        self._credentials: Credentials | None = None

    @property
    def json(self) -> bool:
        return self.output.json_mode

    def option(self, name: str) -> Any:
        return getattr(self.args, name, None)

    @property
    def api_host(self) -> str:
        host = self.option("api_host")
        if host:
            return str(host)
        credentials = self._stored_credentials(required=False)
        return credentials.api_host if credentials is not None else DEFAULT_API_HOST

    def signing_key(self) -> tuple[str, str]:
        """The key id and secret that sign request tokens."""
        key_id, secret = self.option("key_id"), self.option("secret")
        if (key_id is None) != (secret is None):
            raise UsageError("give --key-id and --secret together")
        if key_id is not None and secret is not None:
            return str(key_id), str(secret)
        credentials = self._stored_credentials(required=True)
        assert credentials is not None
        return credentials.key_id, credentials.secret

    def client(self) -> Client:
        """The API client. Tokens are signed with the key, their ``act`` claims being
        ``--auth-context`` (what the machine's authorizers see); with ``--token``, that
        token is sent and ``--auth-context`` goes in ``x-statebacked-act``."""
        if self._client is None:
            claims = self.option("auth_context")
            token = self.option("token")
            if token:
                self._client = Client(
                    self.api_host, auth=str(token), org_id=self.option("org"), act_as=claims
                )
            else:
                key_id, secret = self.signing_key()
                self._client = Client(
                    self.api_host,
                    auth=KeyAuth(key_id, secret, claims or {}),
                    org_id=self.option("org"),
                )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _stored_credentials(self, *, required: bool) -> Credentials | None:
        if self._credentials is None:
            path = default_credentials_path()
            try:
                self._credentials = load_credentials(path)
            except FileNotFoundError:
                if required:
                    raise CliError(
                        f"no credentials at {path}: start `backstate dev` or `backstate serve` "
                        "(they write it), or pass --key-id and --secret, or --token",
                        "no-credentials",
                    ) from None
            except (ValueError, KeyError) as exc:
                raise CliError(
                    f"cannot read the credentials file {path}: {exc}", "invalid-credentials"
                ) from None
        return self._credentials


def build_parser() -> Parser:
    from . import (
        _commands_check,
        _commands_dead_letters,
        _commands_identity,
        _commands_indexes,
        _commands_instances,
        _commands_logs,
        _commands_machines,
        _commands_migrations,
        _commands_secrets,
        _commands_serve,
        _commands_viz,
    )

    root = Parser(
        prog="backstate",
        description="Statecharts as a durable backend: run a server, deploy machines, "
        "drive and inspect instances. `backstate COMMAND --help` for each command.",
        parents=[_common_options()],
    )
    root.add_argument(
        "--version", action="version", version=f"backstate {_version()}", help="print the version"
    )
    commands = Commands(root)
    _commands_serve.register(commands)
    _commands_check.register(commands)
    _commands_machines.register(commands)
    _commands_migrations.register(commands)
    _commands_indexes.register(commands)
    _commands_instances.register(commands)
    _commands_logs.register(commands)
    _commands_dead_letters.register(commands)
    _commands_secrets.register(commands)
    _commands_identity.register(commands)
    _commands_viz.register(commands)
    return root


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("backstate")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


# smply's relative times start with a dash (`--from -10m`), which argparse would take
# for an option: such a value is joined to its option (`--from=-10m`, `-f-10m`) first.
_TIME_OPTIONS = ("--from", "-t", "--to")
_RELATIVE_TIME = re.compile(r"^-\d+(\.\d+)?(ms|s|m|h|d|w|y)$")


def _join_relative_times(argv: Sequence[str]) -> list[str]:
    joined: list[str] = []
    for arg in argv:
        if joined and joined[-1] in _TIME_OPTIONS and _RELATIVE_TIME.match(arg):
            option = joined[-1]
            joined[-1] = f"{option}={arg}" if option.startswith("--") else f"{option}{arg}"
        else:
            joined.append(arg)
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        # `backstate` alone: what it can do, rather than only that a command is missing.
        build_parser().print_help()
        return 2
    try:
        args = build_parser().parse_args(_join_relative_times(argv))
    except UsageError as exc:
        Output(json_mode=False).error(exc.message, exc.code)
        return exc.status
    output = Output(json_mode=bool(getattr(args, "json", False)))
    context = Context(args, output)
    try:
        return args.run(context, args) or 0
    except CliError as exc:
        output.error(exc.message, exc.code)
        return exc.status
    except MachineModuleError as exc:
        output.error(_where(exc) + exc.message, exc.code)
        return 1
    except Unreachable:
        output.error(
            f"cannot reach {context.api_host}: is `backstate dev` or `backstate serve` "
            "running there?",
            "unreachable",
        )
        return 1
    except ApiError as exc:
        output.error(_api_message(exc) + _authorizer_hint(exc, args), exc.code)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        context.close()


def _where(exc: MachineModuleError) -> str:
    return f"{exc.filename}:{exc.line}: " if exc.line else f"{exc.filename}: "


def _authorizer_hint(exc: ApiError, args: argparse.Namespace) -> str:
    """A refusal by the machine's own authorizer, of a request that spoke for nobody:
    the likeliest cause is a forgotten ``--auth-context``."""
    if exc.code != "rejected-by-machine-authorizer":
        return ""
    if getattr(args, "auth_context", None) or getattr(args, "token", None):
        return ""
    if not hasattr(args, "auth_context"):
        return ""
    return (
        "; the request carried no auth context, so the machine's authorizer saw {}:"
        " pass --auth-context JSON, the end user it acts for"
    )


def _api_message(exc: ApiError) -> str:
    if exc.parameter and exc.parameter not in exc.message:
        return f"{exc.message} (parameter {exc.parameter})"
    return exc.message
