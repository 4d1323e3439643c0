"""Runs mermaid's own parser (``mermaid_parse.mjs``, Node) over mermaid texts. The npm
package lives in ``.cache/mermaid``: ``scripts/fetch-suites`` installs it, and so does
``parse_all`` when it is missing (the same pinned version as ``backstate/viz/vendor``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MERMAID = ROOT / ".cache" / "mermaid"
VERSION = "11.17.2"
SCRIPT = Path(__file__).with_name("mermaid_parse.mjs")


def _install() -> None:
    if (MERMAID / ".complete").is_file():
        return
    subprocess.run(
        [
            "npm",
            "install",
            "--silent",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(MERMAID),
            f"mermaid@{VERSION}",
        ],
        check=True,
        timeout=300,
    )
    (MERMAID / ".complete").touch()


def parse_all(texts: list[str]) -> list[str | None]:
    """For each text, None when mermaid parses it as a state diagram, else its error."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed to run mermaid's parser")
    _install()
    # The script's imports resolve from its own folder, so it runs from a copy there.
    runner = MERMAID / SCRIPT.name
    runner.write_text(SCRIPT.read_text())
    done = subprocess.run(
        ["node", str(runner)],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    results: list[str | None] = json.loads(done.stdout)
    return results
