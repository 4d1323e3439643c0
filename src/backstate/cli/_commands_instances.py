"""``backstate instances``: create, drive, inspect, watch and delete machine instances
(``instances upgrade`` lives in ``_commands_upgrade``)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.text import Text

from backstate.client import AdminState, ApiError, Progress, State, paginate

from . import _commands_upgrade
from ._app import Commands, Context, Parser
from ._args import UsageError, confirm, event, json_object, json_value, resolve_version
from ._output import compact, when

MAX_PAGE_SIZE = 1000  # the server's largest index page
# send-event: the instance recorded the event, which selected no transition.
NO_TRANSITION_STATUS = 3


def register(commands: Commands) -> None:
    instances = commands.group("instances", "create, drive, inspect and delete instances")

    listing = instances.command(
        "list",
        "a machine's instances",
        list_instances,
        epilog="example: backstate instances list -m orders",
    )
    listing.add_argument("-m", "--machine", required=True, help="the machine's name")

    query = instances.command(
        "query",
        "instances by an index value, following cursors",
        query_instances,
        epilog="example: backstate instances query -m orders --index total --op gte --value 100 "
        "--type number --sort desc --limit 20",
    )
    query.add_argument("-m", "--machine", required=True, help="the machine's name")
    query.add_argument("--index", required=True, help="the index to read")
    query.add_argument(
        "--op",
        help="compare each value with --value",
        choices=("eq", "ne", "gt", "gte", "lt", "lte"),
    )
    query.add_argument("--value", help="compared with --op (give both, or neither)")
    query.add_argument(
        "--type", choices=("string", "number"), default="string", help="how --value compares"
    )
    query.add_argument("--sort", choices=("asc", "desc"), default="asc", help="the order of values")
    query.add_argument("--limit", type=int, help="at most this many instances (default: all)")
    query.add_argument(
        "--page-size", type=int, help="instances per request (default: the server's, 100)"
    )

    get = instances.command(
        "get",
        "an instance's state, whole context, status and versions (admin view)",
        get_instance,
        epilog="example: backstate instances get -m orders -i order-42",
    )
    _instance_arguments(get)

    create = instances.command(
        "create",
        "create an instance and wait for it to settle",
        create_instance,
        epilog="example: backstate instances create -m toggler -i session-123 "
        """--auth-context '{"sid": "session-123"}'""",
    )
    _instance_arguments(create)
    create.add_argument(
        "-c",
        "--context",
        type=json_object,
        help="JSON object shallow-merged over the machine's initial context: its top-level"
        " keys replace the machine's (a 'public' key replaces all of context.public)",
    )
    create.add_argument(
        "--input",
        type=json_value,
        help="JSON: XState's input, what the machine's context factory receives",
    )
    create.add_argument("-v", "--version", help="version id or reference (default: the current)")
    _auth_context_argument(create)

    send = instances.command(
        "send-event",
        "send an event and wait for the instance to settle",
        send_event,
        epilog="example: backstate instances send-event -m toggler -i session-123 -e toggle "
        """--auth-context '{"sid": "session-123"}'""",
    )
    _instance_arguments(send)
    send.add_argument(
        "-e", "--event", required=True, type=event, help='a type, or JSON {"type": ..., ...}'
    )
    _auth_context_argument(send)

    watch = instances.command(
        "watch",
        "print the instance's state, then each new state as it changes, until it is done "
        "(or Ctrl-C)",
        watch_instance,
        epilog="example: backstate instances watch -m orders -i order-42",
    )
    _instance_arguments(watch)
    _auth_context_argument(watch)
    watch.add_argument(
        "--progress",
        action="store_true",
        help="also print what running services publish (backstate.runtime.progress): "
        'text pieces ({"token": ...}) as they stream, anything else as a line',
    )

    desired = instances.command(
        "set-desired-version",
        "upgrade the instance at its next event (needs a chain of migrations)",
        set_desired_version,
        epilog="example: backstate instances set-desired-version -m orders -i order-42 -v 1.1.0",
    )
    _instance_arguments(desired)
    desired.add_argument("-v", "--version", required=True, help="version id or reference")

    transitions = instances.command(
        "list-transitions",
        "the instance's history: each event and the state it led to",
        list_transitions,
        epilog="example: backstate instances list-transitions -m orders -i order-42",
    )
    _instance_arguments(transitions)

    timers = instances.command(
        "timers",
        "the instance's pending timers (after transitions, delayed sends), soonest first",
        list_timers,
        epilog="example: backstate instances timers -m purchase-order -i po-1",
    )
    _instance_arguments(timers)

    status = instances.command(
        "set-status",
        "pause (refuse every event, timers too) or resume an instance",
        set_status,
        epilog="example: backstate instances set-status -m orders -i order-42 -s paused --yes",
    )
    _instance_arguments(status)
    status.add_argument(
        "-s", "--status", required=True, choices=("running", "paused"), help="the new status"
    )
    status.add_argument("-y", "--yes", action="store_true", help="do not ask before pausing")

    delete = instances.command(
        "delete",
        "delete an instance (or --all of a machine's) with its history",
        delete_instances,
        epilog="example: backstate instances delete -m orders -i order-42 --yes",
    )
    delete.add_argument("-m", "--machine", required=True, help="the machine's name")
    which = delete.add_mutually_exclusive_group(required=True)
    which.add_argument("-i", "--instance", help="the instance's name")
    which.add_argument("--all", action="store_true", help="every instance of the machine")
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask to retype the name")

    _commands_upgrade.register(instances)


def _instance_arguments(parser: Parser) -> None:
    parser.add_argument("-m", "--machine", required=True, help="the machine's name")
    parser.add_argument("-i", "--instance", required=True, help="the instance's name")


def _auth_context_argument(parser: Parser) -> None:
    parser.add_argument(
        "-a",
        "--auth-context",
        type=json_object,
        help="the auth context the machine's authorizers see (JSON), e.g. "
        """'{"sub": "user-1"}'""",
    )


def state_fields(state: State) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = [
        ("state", Text(compact(state.value), style="bold cyan")),
        ("public context", compact(state.public_context)),
    ]
    if state.tags:
        pairs.append(("tags", ", ".join(sorted(state.tags))))
    if state.done:
        pairs.append(("done", "yes"))
    return pairs


def state_line(state: State) -> Text:
    line = Text(compact(state.value), style="bold cyan")
    line.append(f"  {compact(state.public_context)}")
    if state.tags:
        line.append(f"  tags: {', '.join(sorted(state.tags))}", style="dim")
    if state.done:
        line.append("  (done)", style="green")
    return line


def _show_state(context: Context, state: State) -> None:
    if context.json:
        context.output.document(state)
    else:
        context.output.fields(state_fields(state))


# -- commands ------------------------------------------------------------------------------------


def list_instances(context: Context, args: argparse.Namespace) -> None:
    client = context.client()
    items = list(paginate(client.instances.list, args.machine))
    if context.json:
        context.output.document({"instances": items})
        return
    context.output.table(
        ("instance", "created (UTC)", "version", "reference", "status"),
        (
            (
                i.slug,
                when(i.created_at),
                i.machine_version.id if i.machine_version else "",
                (i.machine_version.client_info or "") if i.machine_version else "",
                Text(i.status, style="yellow" if i.status == "paused" else ""),
            )
            for i in items
        ),
        empty=f"machine {args.machine} has no instances",
    )


def query_instances(context: Context, args: argparse.Namespace) -> None:
    if (args.op is None) != (args.value is None):
        raise UsageError("give --op and --value together (or neither, for every instance)")
    value: str | float | None = args.value
    if args.value is not None and args.type == "number":
        try:
            value = float(args.value)
        except ValueError:
            raise UsageError(f"--value {args.value!r} is not a number") from None
    for name, number in (("--limit", args.limit), ("--page-size", args.page_size)):
        if number is not None and number < 1:
            raise UsageError(f"{name} must be at least 1")
    client = context.client()
    found: list[Any] = []
    cursor: str | None = None
    while args.limit is None or len(found) < args.limit:
        size = args.page_size
        if args.limit is not None:
            size = min(size or MAX_PAGE_SIZE, args.limit - len(found))
        page = client.instances.query(
            args.machine,
            args.index,
            op=args.op,
            value=value,
            direction=args.sort,
            limit=size,
            cursor=cursor,
        )
        found.extend(page.items)
        if page.cursor is None:
            break
        cursor = page.cursor
    if context.json:
        context.output.document({"instances": found})
        return
    context.output.table(
        ("instance", args.index),
        ((entry.slug, compact(entry.index_value)) for entry in found),
        empty="no instances match",
    )


def get_instance(context: Context, args: argparse.Namespace) -> None:
    admin: AdminState = context.client().instances.get_admin(args.machine, args.instance)
    if context.json:
        context.output.document(admin)
        return
    version = admin.machine_version
    desired = admin.desired_machine_version
    pairs: list[tuple[str, Any]] = [
        ("state", Text(compact(admin.value), style="bold cyan")),
        ("context", compact(admin.context)),
    ]
    if admin.tags:
        pairs.append(("tags", ", ".join(sorted(admin.tags))))
    pairs += [
        ("done", "yes" if admin.done else "no"),
        ("status", Text(admin.status, style="yellow" if admin.status == "paused" else "")),
        ("version", _version_label(version)),
    ]
    if desired is not None:
        pairs.append(("upgrading to", _version_label(desired)))
    pairs.append(("created (UTC)", when(admin.created_at)))
    context.output.fields(pairs)


def _version_label(version: Any) -> str:
    if version is None:
        return "-"
    return f"{version.id} ({version.client_info})" if version.client_info else version.id


def create_instance(context: Context, args: argparse.Namespace) -> None:
    client = context.client()
    version = resolve_version(client, args.machine, args.version) if args.version else None
    state = client.instances.create(
        args.machine,
        args.instance,
        context=args.context,
        machine_version_id=version,
        input=args.input,
    )
    _show_state(context, state)


def send_event(context: Context, args: argparse.Namespace) -> int:
    state = context.client().instances.send_event(args.machine, args.instance, args.event)
    _show_state(context, state)
    if state.no_transition is None:
        return 0
    # Recorded, but it changed nothing: scripts see it in the status, people in why.
    context.output.warn(state.no_transition.message)
    return NO_TRANSITION_STATUS


def watch_instance(context: Context, args: argparse.Namespace) -> int:
    instances = context.client().instances
    out = context.output
    streaming: str | None = None  # the invoke whose text pieces are being printed
    try:
        with instances.subscribe(args.machine, args.instance, progress=args.progress) as updates:
            for item in updates:
                if context.json:
                    out.document({"progress": item} if isinstance(item, Progress) else item)
                    if isinstance(item, State) and item.done:
                        return 0
                    continue
                token = _token(item) if isinstance(item, Progress) else None
                if streaming is not None and (
                    token is None or not isinstance(item, Progress) or item.invoke_id != streaming
                ):
                    out.line()  # the streamed text ends here
                    streaming = None
                if isinstance(item, Progress):
                    if token is None:
                        out.line(f"  {item.invoke_id}: {compact(item.data)}")
                    else:
                        if streaming is None:
                            out.piece(f"  {item.invoke_id}: ")
                            streaming = item.invoke_id
                        out.piece(token)
                else:
                    out.line(state_line(item))
                if isinstance(item, State) and item.done:
                    return 0  # a done instance never changes again: the watch is over
    except KeyboardInterrupt:
        return 130  # Ctrl-C is how a watch ends: interrupted, as everywhere
    return 0


def _token(progress: Progress) -> str | None:
    data = progress.data
    if isinstance(data, dict) and isinstance(data.get("token"), str):
        return str(data["token"])
    return None


def set_desired_version(context: Context, args: argparse.Namespace) -> None:
    client = context.client()
    version = resolve_version(client, args.machine, args.version)
    client.instances.set_desired_version(args.machine, args.instance, version)
    if context.json:
        context.output.document({"desiredMachineVersionId": version})
        return
    context.output.success(f"{args.instance} will upgrade to {version} at its next event")


def list_transitions(context: Context, args: argparse.Namespace) -> None:
    client = context.client()
    rows = list(paginate(client.instances.list_transitions, args.machine, args.instance))
    if context.json:
        context.output.document({"transitions": rows})
        return
    context.output.table(
        ("time (UTC)", "event", "state"),
        ((when(t.created_at), compact(t.event), compact(t.state)) for t in rows),
        empty="no transitions",
    )


def list_timers(context: Context, args: argparse.Namespace) -> None:
    timers = context.client().instances.timers(args.machine, args.instance)
    if context.json:
        context.output.document({"timers": timers})
        return
    context.output.table(
        ("due (UTC)", "timer", "event"),
        ((when(t.due_at), t.id, compact(t.event)) for t in timers),
        empty="no pending timers",
    )


def set_status(context: Context, args: argparse.Namespace) -> None:
    if args.status == "paused":
        context.output.warn(
            "a paused instance refuses every event, including its timers' (they are retried)"
        )
        confirm(args.instance, "This pauses the instance", yes=args.yes)
    context.client().instances.set_status(args.machine, args.instance, args.status)
    if context.json:
        context.output.document({"instance": args.instance, "status": args.status})
        return
    context.output.success(f"{args.instance} is {args.status}")


def delete_instances(context: Context, args: argparse.Namespace) -> int:
    client = context.client()
    if not args.all:
        confirm(args.instance, "This deletes the instance and its history for good", yes=args.yes)
        client.instances.delete(
            args.machine, args.instance, danger_data_will_be_deleted_forever=True
        )
        if context.json:
            context.output.document({"deleted": [args.instance], "failed": []})
        context.output.success(f"deleted {args.instance}")
        return 0
    names = [i.slug for i in paginate(client.instances.list, args.machine)]
    confirm(
        args.machine,
        f"This deletes all {len(names)} instances of {args.machine} for good",
        yes=args.yes,
    )
    deleted: list[str] = []
    failed: list[dict[str, str]] = []
    with context.output.progress(f"deleting {args.machine}'s instances", len(names)) as step:
        for name in names:
            try:
                client.instances.delete(
                    args.machine, name, danger_data_will_be_deleted_forever=True
                )
                deleted.append(name)
            except ApiError as exc:
                failed.append({"instance": name, "code": exc.code, "error": exc.message})
            step.advance()
    if context.json:
        context.output.document({"deleted": deleted, "failed": failed})
    else:
        context.output.success(f"deleted {len(deleted)} of {len(names)} instances")
        for failure in failed:
            context.output.error(f"{failure['instance']}: {failure['error']}", failure["code"])
    return 1 if failed else 0
