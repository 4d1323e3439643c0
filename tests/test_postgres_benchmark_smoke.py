"""Keeps benchmarks/postgres.py from rotting: a quick run must succeed and verify."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "postgres.py"


def test_postgres_benchmark_quick() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    # each row: its label, then a measured number (not "n/a")
    for label in (
        r"\(a\) psycopg two-row transactions/s, before \(b\)",
        r"\(a\) psycopg two-row transactions/s, after \(b\)",
        r"\(b\) backstate transitions/s \(1 node\)",
        r"transitions per commit \(group commit\)",
        r"send-and-settle latency p50 / p99 \(ms\)",
        r"b/a \(backstate / psycopg loop\)",
    ):
        assert re.search(rf"^\s*{label}\s+[\d,.]+", out, re.MULTILINE), (label, out)
    assert re.search(r"^\(a'\) pgbench two-row transactions/s\s+([\d,.]+|skipped)", out, re.M), out
    assert "verified=False" not in out, out
