"""Keeps benchmarks/durable.py from rotting: a quick run without DBOS must succeed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "durable.py"


def test_durable_benchmark_quick_without_dbos() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--skip-dbos"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    # each row: its label, then a measured number (not "n/a")
    for label in (
        r"\(a\) raw SQLite commits/s \(WAL, FULL\), before \(b\)",
        r"\(a\) raw SQLite commits/s \(WAL, FULL\), after \(b\)",
        r"\(b\) backstate transitions/s",
        r"transitions per commit \(group commit\)",
        r"send-and-settle latency p50 / p99 \(ms\)",
        r"timer lateness p50 / p99 \(ms\)",
        r"b/a \(backstate / raw SQLite\)",
    ):
        assert re.search(rf"^\s*{label}\s+[\d,.]+", out, re.MULTILINE), (label, out)
    assert re.search(r"^\(c\) DBOS Transact steps/s\s+skipped", out, re.MULTILINE), out
    assert "verified=True" in out, out
