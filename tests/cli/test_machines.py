"""`backstate machines`, `machine-versions` and `migrations`, and how the command
reports failures: one line `error: <message> (<code>)`, exit 1 (2 for usage)."""

from __future__ import annotations

import re

from .conftest import FILES, Cli, deploy_greeter


def test_machines_create_with_a_file_then_list_and_get(cli: Cli, name: str) -> None:
    created = cli(
        "machines", "create", "-m", name, "--file", str(FILES / "greeter.py"), "-r", "1.0.0"
    )
    assert created.lines[0] == f"created machine {name}"
    assert re.fullmatch(
        rf"uploaded {FILES / 'greeter.py'} as version ver_\S+ \(1\.0\.0\), current",
        created.lines[1],
    )
    assert created.stderr == ""

    table = cli("machines", "list").lines
    assert table[0].split() == ["machine", "created", "(UTC)", "current", "version", "reference"]
    row = next(line.split() for line in table if line.startswith(name + " "))
    assert row[3].startswith("ver_") and row[4] == "1.0.0"

    machines = cli("--json", "machines", "list").json()["machines"]
    mine = next(m for m in machines if m["slug"] == name)
    assert mine["currentVersion"]["clientInfo"] == "1.0.0"

    shown = cli("machines", "get", "-m", name, "--json").json()["machine"]
    assert shown["currentVersion"]["id"] == row[3]
    fields = dict(line.split(None, 1) for line in cli("machines", "get", "-m", name).lines)
    assert fields["machine"] == name


def test_new_version_upload_and_versions_list(cli: Cli, name: str) -> None:
    first = deploy_greeter(cli, name)
    second = cli(
        "--json",
        "machine-versions",
        "create",
        "-m",
        name,
        "--file",
        str(FILES / "greeter_v2.py"),
        "--version-reference",
        "2.0.0",
        "--no-make-current",
    ).json()
    assert second["current"] is False and second["machineVersionId"] != first

    listed = cli("machine-versions", "list", "-m", name)
    rows = [line.split() for line in listed.lines[1:]]
    assert rows == [
        ["*", first, "1.0.0", *rows[0][3:]],
        [second["machineVersionId"], "2.0.0", *rows[1][2:]],
    ]

    # Current by default, as `machines create --file` and the client make it.
    cli("machine-versions", "create", "-m", name, "-f", str(FILES / "greeter_v2.py"))
    versions = cli("--json", "machine-versions", "list", "-m", name).json()["versions"]
    assert [v["current"] for v in versions] == [False, False, True]
    assert versions[0]["clientInfo"] == "1.0.0"


def test_not_found_is_one_error_line_and_exit_1(cli: Cli) -> None:
    missing = cli("machines", "get", "-m", "no-such-machine", ok=False)
    assert missing.status == 1 and missing.stdout == ""
    assert re.fullmatch(r"error: .*no-such-machine.* \(machine-not-found\)", missing.error)

    instance = cli("instances", "get", "-m", "no-such-machine", "-i", "x", ok=False)
    assert instance.status == 1
    assert instance.error.startswith("error: ") and instance.error.endswith("-not-found)")


def test_bad_json_and_bad_usage_exit_2(cli: Cli, name: str) -> None:
    bad = cli("instances", "create", "-m", name, "-i", "x", "--context", "{nope", ok=False)
    assert bad.status == 2 and bad.stdout == ""
    assert bad.error.startswith("error: backstate instances create: argument -c/--context: ")
    assert bad.error.endswith("(invalid-json)")

    missing = cli("machines", "create", ok=False)
    assert missing.status == 2
    assert missing.error == (
        "error: backstate machines create: the following arguments are required: "
        "-m/--machine (usage)"
    )
    assert cli("no-such-command", ok=False).status == 2


def test_validation_failure_names_file_and_line(cli: Cli, name: str) -> None:
    broken = str(FILES / "broken.py")
    refused = cli("machines", "create", "-m", name, "--file", broken, ok=False)
    assert refused.status == 1 and refused.stdout == ""
    assert refused.error == (
        f"error: {broken}:6: ValueError: invalid literal for int() with base 10: "
        "'not a number' (import-error)"
    )
    # Nothing was created: the file is checked before any request.
    assert cli("machines", "get", "-m", name, ok=False).status == 1

    not_machine = cli(
        "machine-versions",
        "create",
        "-m",
        name,
        "--file",
        str(FILES / "rename_listening.py"),
        ok=False,
    )
    assert not_machine.error == (
        f"error: {FILES / 'rename_listening.py'}: the file must define `machine` (missing-export)"
    )
    missing = cli("machines", "create", "-m", name, "--file", "nope.py", ok=False)
    assert missing.error == "error: nope.py: no such file (file-not-found)"


def test_migration_file_is_validated(cli: Cli, name: str) -> None:
    deploy_greeter(cli, name)
    refused = cli(
        "migrations",
        "create",
        "-m",
        name,
        "--from",
        "1.0.0",
        "--to",
        "1.0.0",
        "--file",
        str(FILES / "greeter.py"),
        ok=False,
    )
    assert refused.error == (
        f"error: {FILES / 'greeter.py'}: the file must define `upgrade_state` (missing-export)"
    )
    unknown = cli(
        "migrations",
        "create",
        "-m",
        name,
        "--from",
        "0.9",
        "--to",
        "1.0.0",
        "--file",
        str(FILES / "rename_listening.py"),
        ok=False,
    )
    assert unknown.error == f"error: machine {name!r} has no version '0.9' (version-not-found)"


def test_delete_asks_to_retype_the_name(cli: Cli, name: str) -> None:
    deploy_greeter(cli, name)
    refused = cli("machines", "delete", "-m", name, input="wrong\n", ok=False)
    assert refused.status == 1 and refused.stderr.endswith(
        "error: not confirmed (type the name, or pass --yes) (not-confirmed)\n"
    )
    assert cli("machines", "get", "-m", name).status == 0

    cli("instances", "create", "-m", name, "-i", "one")
    busy = cli("machines", "delete", "-m", name, "--yes", ok=False)
    assert busy.status == 1 and busy.error.endswith("(invalid-state)")

    cli("instances", "delete", "-m", name, "-i", "one", "--yes")
    deleted = cli("machines", "delete", "-m", name, input=f"{name}\n")
    assert deleted.lines == [f"deleted machine {name}"]
    assert cli("machines", "get", "-m", name, ok=False).status == 1
