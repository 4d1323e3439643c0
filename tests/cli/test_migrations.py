"""`backstate migrations list/get/delete` and the refusal of a second migration between
the same two versions; `backstate instances timers`; `instances watch` ends on Ctrl-C
with status 130."""

from __future__ import annotations

import re

from .conftest import FILES, Cli, deploy_greeter


def _upload(cli: Cli, name: str, *, ok: bool = True) -> str:
    done = cli(
        "migrations",
        "create",
        "-m",
        name,
        "--from",
        "1.0.0",
        "--to",
        "2.0.0",
        "--file",
        str(FILES / "rename_listening.py"),
        ok=ok,
    )
    return done.stdout.strip() if ok else done.error


def test_list_get_delete_and_a_second_upload(cli: Cli, name: str) -> None:
    v1 = deploy_greeter(cli, name)
    cli("machine-versions", "create", "-m", name, "-f", str(FILES / "greeter_v2.py"), "-r", "2.0.0")
    assert cli("migrations", "list", "-m", name, ok=False).stderr.startswith("no migrations of")
    first = _upload(cli, name).split()[2]
    assert first.startswith("mig_")

    listed = cli("--json", "migrations", "list", "-m", name).json()["migrations"]
    assert [(m["id"], m["fromVersionId"]) for m in listed] == [(first, v1)]
    table = cli("migrations", "list", "-m", name).lines
    assert table[0].split() == ["migration", "from", "to", "created", "(UTC)"]
    assert table[1].startswith(first)
    got = cli("--json", "migrations", "get", "-m", name, "--id", first).json()["migration"]
    assert got["code"] == (FILES / "rename_listening.py").read_text()

    # A corrected upload for the same pair is refused, naming the one in the way.
    refused = _upload(cli, name, ok=False)
    assert refused.endswith("(migration-exists)") and first in refused
    assert len(cli("--json", "migrations", "list", "-m", name).json()["migrations"]) == 1

    gone = cli("migrations", "delete", "-m", name, "--id", first, input="wrong\n", ok=False)
    assert gone.status == 1 and "(not-confirmed)" in gone.stderr
    assert cli("migrations", "delete", "-m", name, "--id", first, "--yes").stdout.strip() == (
        f"deleted migration {first} of {name}"
    )
    assert cli("--json", "migrations", "list", "-m", name).json()["migrations"] == []
    missing = cli("migrations", "get", "-m", name, "--id", first, ok=False)
    assert missing.error.endswith("(migration-not-found)")
    second = _upload(cli, name).split()[2]  # now the corrected one is accepted
    assert second != first
    assert cli("--json", "migrations", "list", "-m", name).json()["migrations"][0]["id"] == second


def test_timers_of_an_instance(cli: Cli, name: str) -> None:
    cli("machines", "create", "-m", name, "--file", str(FILES / "reminder.py"))
    cli("instances", "create", "-m", name, "-i", "r")
    table = cli("instances", "timers", "-m", name, "-i", "r").lines
    assert table[0].split() == ["due", "(UTC)", "timer", "event"]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  \S+  \{\"type\": \"xstate\.after\.", table[1])
    (timer,) = cli("--json", "instances", "timers", "-m", name, "-i", "r").json()["timers"]
    assert timer["event"]["type"].startswith("xstate.after.3600000.")


def test_watch_ends_on_ctrl_c_with_status_130(cli: Cli, name: str) -> None:
    deploy_greeter(cli, name)
    cli("instances", "create", "-m", name, "-i", "w")
    watch = cli.start("instances", "watch", "-m", name, "-i", "w")
    watch.wait_for("listening")
    assert watch.stop() == 130


def test_an_upgrade_that_renames_a_waiting_state_moves_its_timer(cli: Cli, name: str) -> None:
    cli("machines", "create", "-m", name, "--file", str(FILES / "reminder.py"), "-r", "1")
    cli("machine-versions", "create", "-m", name, "-f", str(FILES / "reminder_v2.py"), "-r", "2")
    cli(
        "migrations",
        "create",
        "-m",
        name,
        "--from",
        "1",
        "--to",
        "2",
        "--file",
        str(FILES / "rename_waiting.py"),
    )
    cli("instances", "create", "-m", name, "-i", "r", "-v", "1")
    (before,) = cli("--json", "instances", "timers", "-m", name, "-i", "r").json()["timers"]
    assert before["id"] == "xstate.after.3600000.reminder.waiting"

    dry = cli("instances", "upgrade", "-m", name, "-i", "r", "--to", "2", "--dry-run")
    assert dry.stderr.splitlines() == [
        "warning: r: timer xstate.after.3600000.reminder.waiting moves to "
        "xstate.after.3600000.reminder.pending, due as before"
    ]
    cli("instances", "upgrade", "-m", name, "-i", "r", "--to", "2")
    (after,) = cli("--json", "instances", "timers", "-m", name, "-i", "r").json()["timers"]
    assert after == {
        **before,
        "id": "xstate.after.3600000.reminder.pending",
        "event": {"type": "xstate.after.3600000.reminder.pending"},
    }
