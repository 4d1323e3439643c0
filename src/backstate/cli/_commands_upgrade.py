"""``backstate instances upgrade`` (beyond State Backed): move one instance, or every
instance on a version, to another version now, or ``--dry-run`` first: replay each
instance's recorded history on the target version and report where it diverges.

An outcome per instance: ``upgraded`` (now on the target), ``pending`` (not settled:
it upgrades at its next event), ``clean`` (a dry run that replayed identically), or a
failure with a code: the API's (``no-migration-path``, ...), ``diverged`` (a dry run
found a difference) or ``upgrade-failed`` (a migration raised or produced an invalid
state: the instance stays where it was and its logs say why).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from backstate.client import ApiError, Client, UpgradeReport, paginate

from ._app import Context, Group
from ._args import CliError, resolve_version
from ._output import compact


def register(instances: Group) -> None:
    upgrade = instances.command(
        "upgrade",
        "upgrade an instance (-i) or every instance on a version (--all-on) to --to, "
        "or --dry-run: replay their histories on it and report any divergence",
        upgrade_command,
        epilog="examples:\n"
        "  backstate instances upgrade -m tic-tac-toe -i game-1 --to 1.1.0 --dry-run\n"
        "  backstate instances upgrade -m tic-tac-toe --all-on 1.0.0 --to 1.1.0",
    )
    upgrade.add_argument("-m", "--machine", required=True, help="the machine's name")
    which = upgrade.add_mutually_exclusive_group(required=True)
    which.add_argument("-i", "--instance", help="the instance's name")
    which.add_argument("--all-on", metavar="VERSION", help="every instance on this version")
    upgrade.add_argument("--to", required=True, metavar="VERSION", help="id or reference")
    upgrade.add_argument(
        "--dry-run", action="store_true", help="replay and compare; change nothing"
    )


@dataclass
class Outcome:
    instance: str
    result: str  # upgraded, pending, clean, or failed
    code: str | None = None
    error: str | None = None
    report: UpgradeReport | None = None

    @property
    def failed(self) -> bool:
        return self.result == "failed"


def upgrade_command(context: Context, args: argparse.Namespace) -> int:
    client = context.client()
    target = resolve_version(client, args.machine, args.to)
    if args.instance is not None:
        outcome = _upgrade_one(client, args.machine, args.instance, target, args.dry_run)
        _print_one(context, outcome, target)
        return 1 if outcome.failed else 0
    source = resolve_version(client, args.machine, args.all_on)
    names = [
        i.slug
        for i in paginate(client.instances.list, args.machine)
        if i.machine_version is not None and i.machine_version.id == source
    ]
    verb = "replaying" if args.dry_run else "upgrading"
    outcomes = []
    with context.output.progress(f"{verb} {len(names)} instances", len(names)) as step:
        for name in names:
            outcomes.append(_upgrade_one(client, args.machine, name, target, args.dry_run))
            step.advance()
    _print_summary(context, outcomes, source, target, args.dry_run)
    return 1 if any(o.failed for o in outcomes) else 0


def _upgrade_one(
    client: Client, machine: str, instance: str, target: str, dry_run: bool
) -> Outcome:
    try:
        if dry_run:
            report = client.instances.dry_run_upgrade(machine, instance, target)
            if report.diverged_at is None:
                return Outcome(instance, "clean", report=report)
            return Outcome(
                instance,
                "failed",
                "diverged",
                f"diverges at transition {report.diverged_at}",
                report,
            )
        client.instances.set_desired_version(machine, instance, target, upgrade_now=True)
        admin = client.instances.get_admin(machine, instance)
    except ApiError as exc:
        return Outcome(instance, "failed", exc.code, exc.message)
    if admin.machine_version is not None and admin.machine_version.id == target:
        return Outcome(instance, "upgraded")
    desired = admin.desired_machine_version
    if desired is not None and desired.id == target:
        return Outcome(instance, "pending")
    current = admin.machine_version.id if admin.machine_version else "its version"
    return Outcome(
        instance,
        "failed",
        "upgrade-failed",
        f"the migration failed; it stays on {current} "
        f"(backstate logs get -m {machine} -i {instance})",
    )


def _plain(outcome: Outcome) -> dict[str, Any]:
    body: dict[str, Any] = {"instance": outcome.instance, "result": outcome.result}
    if outcome.code is not None:
        body.update(code=outcome.code, error=outcome.error)
    if outcome.report is not None:
        body["report"] = outcome.report
    return body


def _print_one(context: Context, outcome: Outcome, target: str) -> None:
    output = context.output
    if context.json:
        output.document(_plain(outcome))
        return
    report = outcome.report
    if outcome.result == "upgraded":
        output.success(f"upgraded {outcome.instance} to {target}")
    elif outcome.result == "pending":
        output.success(f"{outcome.instance} will upgrade to {target} at its next event")
    elif report is not None:
        _print_report(context, outcome.instance, report)
    if outcome.failed and report is None:
        raise CliError(f"{outcome.instance}: {outcome.error}", outcome.code or "upgrade-failed")


def _print_report(context: Context, instance: str, report: UpgradeReport) -> None:
    output = context.output
    for change in report.timers:
        output.warn(f"{instance}: {change}")
    path = ", ".join(report.migration_path) or "none"
    if report.diverged_at is None:
        output.success(
            f"{instance} replays cleanly on {report.to_version_id}: "
            f"{report.replayed} transitions replayed (migrations: {path})"
        )
        return
    output.line(
        Text(
            f"{instance} diverges on {report.to_version_id} at transition "
            f"{report.diverged_at} (event {compact(report.event)}), "
            f"after {report.replayed - 1} identical transitions (migrations: {path})",
            style="yellow",
        )
    )
    output.fields(
        [
            ("recorded, migrated", _result(report.expected)),
            ("the new version", _result(report.actual)),
        ]
    )


def _result(result: dict[str, Any] | None) -> str:
    if not result:
        return "-"
    if "error" in result:
        return f"error: {result['error']}"
    return f"state {compact(result.get('value'))}, context {compact(result.get('context'))}"


def _print_summary(
    context: Context, outcomes: list[Outcome], source: str, target: str, dry_run: bool
) -> None:
    output = context.output
    failed = [o for o in outcomes if o.failed]
    if context.json:
        output.document(
            {
                "from": source,
                "to": target,
                "dryRun": dry_run,
                "instances": [_plain(o) for o in outcomes],
                "failed": len(failed),
            }
        )
        return
    total = len(outcomes)
    if dry_run:
        clean = sum(o.result == "clean" for o in outcomes)
        output.line(f"{clean} of {total} instances on {source} replay cleanly on {target}")
    else:
        upgraded = sum(o.result == "upgraded" for o in outcomes)
        pending = sum(o.result == "pending" for o in outcomes)
        line = f"upgraded {upgraded} of {total} instances from {source} to {target}"
        output.line(line + (f"; {pending} will at their next event" if pending else ""))
    if failed:
        output.table(
            ("failed", "code", "error"),
            ((o.instance, Text(o.code or "", style="red"), o.error or "") for o in failed),
            empty="",
        )
