"""`backstate check FILE` (a machine or a migration file, loaded as an upload would
be; no server needed) and `backstate --version`."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

from .conftest import FILES, Cli

BAD_TARGET = """from backstate.chart import setup

machine = setup().create_machine(
    {"id": "po", "initial": "draft", "states": {"draft": {"on": {"submit": "reveiw"}}, "review": {}}}
)
"""

MIGRATION = """def upgrade_state(old_state_path, context):
    return old_state_path


def upgrade_context(old_state_paths, new_state_paths, context):
    return context
"""


def test_a_good_machine_lists_what_each_state_accepts(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    checked = cli("check", str(FILES / "purchase_order.py"))
    assert checked.lines == [
        f"{FILES / 'purchase_order.py'}: machine 'purchase-order', 4 states",
        "state     accepts",
        "draft     submit",
        "review    approve, explode, reject",
        "approved  close",
        "closed    (final)",
    ]
    as_json = json.loads(cli("check", "--json", str(FILES / "purchase_order.py")).stdout)
    assert as_json["states"]["review"] == ["approve", "explode", "reject"]


def test_problems_name_the_file_line_and_state(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    bad = tmp_path / "bad.py"
    bad.write_text(BAD_TARGET)
    failed = cli("check", str(bad), ok=False)
    assert failed.status == 1
    assert failed.error == (
        f"error: {bad}:3: target 'reveiw' does not exist (at draft; unknown-target) "
        "(invalid-machine)"
    )
    broken = cli("check", str(FILES / "broken.py"), ok=False)
    assert (broken.status, broken.error) == (
        1,
        f"error: {FILES / 'broken.py'}:6: ValueError: invalid literal for int() with base 10: "
        "'not a number' (import-error)",
    )
    missing = cli("check", str(tmp_path / "nope.py"), ok=False)
    assert missing.status == 1 and missing.error.endswith("(file-not-found)")


def test_a_migration_file_is_checked_as_one(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    good = tmp_path / "v1_to_v2.py"
    good.write_text(MIGRATION)
    assert cli("check", str(good)).lines == [
        f"{good}: a migration (upgrade_state, upgrade_context)"
    ]
    half = tmp_path / "half.py"
    half.write_text(MIGRATION.split("\n\n\n")[0])
    failed = cli("check", str(half), ok=False)
    assert failed.error == f"error: {half}: the file must define `upgrade_context` (missing-export)"


def test_version(tmp_path: Path) -> None:
    assert Cli(tmp_path)("--version").stdout == f"backstate {version('backstate')}\n"
