"""Keeps benchmarks/engine.py from rotting: a quick backstate-only run must succeed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "engine.py"


def test_engine_benchmark_quick_backstate_only() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--only", "backstate"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for machine in ("flat", "deep", "parallel"):
        # a table row: the machine name, then a measured rate (not "n/a")
        assert re.search(rf"^\W*{machine}\W+[\d,]+\b", proc.stdout, re.MULTILINE), proc.stdout
    assert "machines constructed/s" in proc.stdout
