"""``backstate viz``: the real command on example files and on a git repository made
for the test; SVG and PNG drawn by the vendored mermaid in Debian's Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.viz.mermaid import parse_all

from .conftest import BACKSTATE, Cli

ROOT = Path(__file__).resolve().parents[2]
TOGGLER = ROOT / "examples" / "toggler.py"
GOLDEN = ROOT / "tests" / "viz" / "golden"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def test_mermaid_is_the_golden_diagram(cli: Cli) -> None:
    assert cli("viz", str(TOGGLER)).stdout == (GOLDEN / "toggler.mmd").read_text()


def test_state_highlights_a_configuration(cli: Cli) -> None:
    dotted = cli("viz", str(TOGGLER), "--state", "off").stdout
    assert dotted.splitlines()[-2:] == ["  class s2 active", "  class s0 activeGroup"]
    nested = ROOT / "examples" / "email_automation.py"
    value = '{"run": {"userState": "userIsSupporter", "emailSender": "start"}}'
    text = cli("viz", str(nested), "--state", value).stdout
    assert "  class s27, s29 active" in text
    assert parse_all([dotted, text]) == [None, None]


def test_bad_input_is_one_line_with_a_code(cli: Cli, tmp_path: Path) -> None:
    unknown = cli("viz", str(TOGGLER), "--state", "nope", ok=False)
    assert (unknown.status, unknown.error) == (
        1,
        "error: --state: no child state 'nope' (invalid-state)",
    )
    missing = cli("viz", str(tmp_path / "none.py"), ok=False)
    assert missing.error.endswith("(file-not-found)")
    assert cli("viz", ok=False).status == 2
    assert cli("viz", str(TOGGLER), "--changed-since", "HEAD", ok=False).status == 2


def test_svg_and_png(cli: Cli, tmp_path: Path) -> None:
    svg, png = tmp_path / "toggler.svg", tmp_path / "toggler.png"
    cli("viz", str(TOGGLER), "-o", str(svg), "--state", "off")
    cli("viz", str(TOGGLER), "-o", str(png))
    text = svg.read_text()
    assert text.startswith("<svg") and 'aria-roledescription="stateDiagram"' in text
    words = " ".join(re.sub(r"<[^>]+>", " ", text).split())
    assert "toggle / count" in words and "toggler" in words
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copy(png, _artifacts() / "viz-toggler.png")


def _artifacts() -> Path:
    where = ROOT / ".cache" / "artifacts"
    where.mkdir(parents=True, exist_ok=True)
    return where


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def test_changed_since_draws_each_changed_machine_before_and_after(
    cli: Cli, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    (repo / "machines").mkdir(parents=True)
    source = TOGGLER.read_text()
    (repo / "machines" / "toggler.py").write_text(source)
    (repo / "machines" / "same.py").write_text(source)
    (repo / "helper.py").write_text("raise SystemExit('never run')\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "base")
    (repo / "machines" / "toggler.py").write_text(
        source.replace('"off": {"on"', '"broken": {"on": {"fix": "on"}}, "off": {"on"')
    )
    (repo / "machines" / "same.py").write_text(source + "\n# a comment\n")
    (repo / "machines" / "new.py").write_text(source)
    (repo / "helper.py").write_text("raise SystemExit('still never run')\n")
    (repo / "machines" / "bad.py").write_text("machine = (\n")
    done = subprocess.run(
        [BACKSTATE, "viz", "--changed-since", "main"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
        env=cli.env(),
    )
    text = done.stdout
    assert text.startswith("## Machine diagrams\n")
    sections = text.split("### ")[1:]
    assert [s.splitlines()[0] for s in sections] == [
        "`machines/bad.py`",
        "`machines/new.py`",
        "`machines/same.py`",
        "`machines/toggler.py`",
    ]
    bad, new, same, toggler = sections
    assert "Cannot draw it:" in bad and "(syntax-error)" in bad
    assert "**Before (`main`)**\n\n(no machine)" in new
    assert "The diagram did not change." in same
    before, after = toggler.split("**After**")
    assert '"broken"' not in before and 'state "broken" as' in after
    blocks = [b.split("```")[0] for b in text.split("```mermaid\n")[1:]]
    assert len(blocks) == 4 and parse_all(blocks) == [None] * 4
