"""``backstate logs get`` and ``logs watch``: what machines printed or logged, per
machine, instance and version. Both catch up from ``--from`` with a progress bar; ``get``
stops there, ``watch`` then follows new entries."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from datetime import UTC, datetime

from rich.text import Text

from backstate.client import LogEntry

from ._app import Commands, Context, Parser
from ._args import UsageError, duration, moment
from ._output import Step

DEFAULT_FROM = "-1h"
POLL_INTERVAL_S = 2.0  # a local server answers a poll in a millisecond


def register(commands: Commands) -> None:
    logs = commands.group("logs", "what machines printed or logged")
    get = logs.command(
        "get",
        "the logs from --from to --to (default: the last hour, until now)",
        get_logs,
        epilog="example: backstate logs get -m toggler --from -10m",
    )
    _filters(get)
    watch = logs.command(
        "watch",
        "catch up from --from, then print new entries as they come (Ctrl-C to stop)",
        watch_logs,
        epilog="example: backstate logs watch -m toggler -i session-123",
    )
    _filters(watch)
    watch.add_argument(
        "--interval",
        type=duration,
        default=duration(f"{POLL_INTERVAL_S}s"),
        help=f"how often to ask for new entries (default {POLL_INTERVAL_S}s)",
    )


def _filters(parser: Parser) -> None:
    parser.add_argument(
        "--from",
        dest="start",
        default=DEFAULT_FROM,
        help=f"ISO-8601, or relative to now: -10m, -1h, -2d (default {DEFAULT_FROM})",
    )
    parser.add_argument("-t", "--to", help="ISO-8601, or relative to --from: 10m")
    parser.add_argument("-m", "--machine", help="only this machine's lines")
    parser.add_argument("-i", "--instance", help="only this instance's lines")
    parser.add_argument("-v", "--version", help="a version id")
    parser.add_argument(
        "--clean",
        action="store_true",
        help="a header line per machine/instance/version/stream, then the raw lines",
    )


def _window(args: argparse.Namespace) -> tuple[datetime, datetime | None]:
    try:
        start = moment(args.start)
        end = moment(args.to, start) if args.to else None
    except argparse.ArgumentTypeError as exc:
        raise UsageError(str(exc)) from None
    if end is not None and end <= start:
        raise UsageError("--to must come after --from")
    return start, end


def get_logs(context: Context, args: argparse.Namespace) -> None:
    start, end = _window(args)
    now = datetime.now(UTC)
    printer = Printer(context, args, stream=False)
    for entry in _catch_up(context, args, start, min(end, now) if end else now):
        printer.add(entry)
    printer.finish()


def watch_logs(context: Context, args: argparse.Namespace) -> None:
    start, end = _window(args)
    now = datetime.now(UTC)
    printer = Printer(context, args, stream=True)
    try:
        for entry in _catch_up(context, args, start, min(now, end) if end else now):
            printer.add(entry)
        if end is None or end > now:
            for entry in context.client().logs.watch(
                now if start < now else start,
                to=end,
                poll_interval_s=args.interval.total_seconds(),
                **_filter_kwargs(args),
            ):
                printer.add(entry)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a watch ends


def _filter_kwargs(args: argparse.Namespace) -> dict[str, str | None]:
    return {"machine": args.machine, "instance": args.instance, "version_id": args.version}


def _catch_up(
    context: Context, args: argparse.Namespace, start: datetime, end: datetime
) -> Iterator[LogEntry]:
    """Every entry from ``start`` (inclusive) to ``end`` (exclusive), with a progress bar
    over that time span."""
    span = max((end - start).total_seconds(), 0.001)
    entries = context.client().logs.watch(start, to=end, poll_interval_s=0, **_filter_kwargs(args))
    with context.output.progress("catching up", 100, items=False) as step:
        for entry in entries:
            _advance(step, entry.timestamp, start, span)
            yield entry
        step.update(completed=100)


def _advance(step: Step, timestamp: datetime, start: datetime, span: float) -> None:
    step.update(completed=min(100.0, 100 * (timestamp - start).total_seconds() / span))


class Printer:
    """Log entries for people (a line each, or ``--clean`` groups), or JSON: one
    document with every entry (``get``), or one per entry (``watch``)."""

    def __init__(self, context: Context, args: argparse.Namespace, *, stream: bool) -> None:
        self.context = context
        self.clean = args.clean
        self.version = args.version
        self.stream = stream
        self.collected: list[LogEntry] = []
        self.printed = 0
        self._group: tuple[str, str | None, str | None, str] | None = None

    def add(self, entry: LogEntry) -> None:
        if self.version is not None and entry.machine_version_id != self.version:
            return  # the server may not filter by version: make sure
        output = self.context.output
        if self.context.json:
            if self.stream:
                output.document(entry)
            else:
                self.collected.append(entry)
            return
        self.printed += 1
        where = entry.machine_name + (f"/{entry.instance_name}" if entry.instance_name else "")
        if self.clean:
            group = (
                entry.machine_name,
                entry.instance_name,
                entry.machine_version_id,
                entry.output_type,
            )
            if group != self._group:
                self._group = group
                version = f" ({entry.machine_version_id})" if entry.machine_version_id else ""
                output.line(Text(f"== {where}{version} {entry.output_type} ==", style="bold"))
            output.line(entry.log)
            return
        line = Text(entry.timestamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], style="dim")
        line.append(f"  {where}  ")
        line.append(entry.output_type, style="red" if entry.output_type == "stderr" else "green")
        line.append(f"  {entry.log}")
        output.line(line)

    def finish(self) -> None:
        if self.context.json and not self.stream:
            self.context.output.document({"logs": self.collected})
        elif self.printed == 0 and not self.context.json:
            self.context.output.note("no log entries")
