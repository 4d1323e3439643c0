"""Migrations and `backstate instances upgrade` (issue 6): dry runs that replay cleanly
or find where the new version diverges, a real upgrade, and bulk upgrades of every
instance on a version with one instance whose migration fails."""

from __future__ import annotations

import json
import re

import pytest

from .conftest import FILES, Cli, deploy_greeter


@pytest.fixture
def versions(cli: Cli, name: str) -> tuple[str, str]:
    """Greeter 1.0.0 (current) and 2.0.0 with a migration between them, and instances
    on 1.0.0: `clean` and `other` said hello (v2 replays them identically), `twice`
    said "twice" (v2 counts that as two: a divergence) and `fails` cannot be migrated."""
    v1 = deploy_greeter(cli, name)
    v2 = cli(
        "--json",
        "machine-versions",
        "create",
        "-m",
        name,
        "-f",
        str(FILES / "greeter_v2.py"),
        "-r",
        "2.0.0",
        "--no-make-current",
    ).json()["machineVersionId"]
    migration = cli(
        "migrations",
        "create",
        "-m",
        name,
        "--from",
        "1.0.0",
        "--to",
        v2,
        "--file",
        str(FILES / "rename_listening.py"),
    )
    assert re.fullmatch(rf"uploaded migration \S+ from {v1} to {v2}", migration.stdout.strip())
    for instance, text, context in (
        ("clean", "hello", "{}"),
        ("other", "hello", "{}"),
        ("twice", "twice", "{}"),
        ("fails", "hello", '{"fail": true}'),
    ):
        cli("instances", "create", "-m", name, "-i", instance, "--context", context)
        cli(
            "instances",
            "send-event",
            "-m",
            name,
            "-i",
            instance,
            "-e",
            f'{{"type": "say", "text": "{text}"}}',
        )
    return v1, v2


def test_dry_run_of_one_instance(cli: Cli, name: str, versions: tuple[str, str]) -> None:
    _, v2 = versions
    clean = cli("instances", "upgrade", "-m", name, "-i", "clean", "--to", "2.0.0", "--dry-run")
    assert re.fullmatch(
        rf"clean replays cleanly on {v2}: 1 transitions replayed \(migrations: \S+\)",
        clean.stdout.strip(),
    )

    diverged = cli(
        "instances", "upgrade", "-m", name, "-i", "twice", "--to", v2, "--dry-run", ok=False
    )
    assert diverged.status == 1
    assert re.fullmatch(
        rf'twice diverges on {v2} at transition 1 \(event {{"type": "say", "text": "twice"}}\), '
        r"after 0 identical transitions \(migrations: \S+\)",
        diverged.lines[0],
    )
    assert diverged.lines[1:] == [
        'recorded, migrated  state ready, context {"public": {"said": 1}}',
        'the new version     state ready, context {"public": {"said": 2}}',
    ]
    report = cli(
        "--json",
        "instances",
        "upgrade",
        "-m",
        name,
        "-i",
        "twice",
        "--to",
        v2,
        "--dry-run",
        ok=False,
    )
    assert report.status == 1
    body = json.loads(report.stdout)
    assert (body["result"], body["code"]) == ("failed", "diverged")
    assert body["report"]["actual"]["context"] == {"public": {"said": 2}}
    # Nothing changed.
    assert (
        cli("--json", "instances", "get", "-m", name, "-i", "twice").json()["state"] == "listening"
    )


def test_upgrade_one_instance(cli: Cli, name: str, versions: tuple[str, str]) -> None:
    _, v2 = versions
    upgraded = cli("instances", "upgrade", "-m", name, "-i", "clean", "--to", "2.0.0")
    assert upgraded.lines == [f"upgraded clean to {v2}"]
    admin = cli("--json", "instances", "get", "-m", name, "-i", "clean").json()
    assert (admin["state"], admin["machineVersion"]["id"]) == ("ready", v2)

    failed = cli("instances", "upgrade", "-m", name, "-i", "fails", "--to", "2.0.0", ok=False)
    assert failed.status == 1 and failed.stdout == ""
    assert failed.error.endswith("(migration-failed)") and "fails:" in failed.error

    back = cli("instances", "upgrade", "-m", name, "-i", "clean", "--to", "1.0.0", ok=False)
    assert back.error.endswith("(no-migration-path)")


def test_bulk_dry_run_and_upgrade(cli: Cli, name: str, versions: tuple[str, str]) -> None:
    v1, v2 = versions
    dry = cli(
        "instances",
        "upgrade",
        "-m",
        name,
        "--all-on",
        "1.0.0",
        "--to",
        "2.0.0",
        "--dry-run",
        ok=False,
    )
    assert dry.status == 1
    assert dry.lines[0] == f"2 of 4 instances on {v1} replay cleanly on {v2}"
    failures = {line.split()[0]: line.split()[1] for line in dry.lines[2:]}
    assert failures["twice"] == "diverged" and set(failures) == {"twice", "fails"}

    done = cli("--json", "instances", "upgrade", "-m", name, "--all-on", v1, "--to", v2, ok=False)
    assert done.status == 1
    summary = json.loads(done.stdout)
    results = {i["instance"]: (i["result"], i.get("code")) for i in summary["instances"]}
    assert results == {
        "clean": ("upgraded", None),
        "other": ("upgraded", None),
        "twice": ("upgraded", None),
        "fails": ("failed", "migration-failed"),
    }
    assert summary["failed"] == 1

    on_v2 = cli("--json", "instances", "list", "-m", name).json()["instances"]
    assert {i["slug"]: i["machineVersion"]["id"] for i in on_v2} == {
        "clean": v2,
        "other": v2,
        "twice": v2,
        "fails": v1,
    }
    # Again: only `fails` is left on 1.0.0, and it fails again; the table says so.
    again = cli("instances", "upgrade", "-m", name, "--all-on", "1.0.0", "--to", "2.0.0", ok=False)
    assert again.lines[0] == f"upgraded 0 of 1 instances from {v1} to {v2}"
    assert again.lines[1].split() == ["failed", "code", "error"]
    assert again.lines[2].split()[:2] == ["fails", "migration-failed"]
