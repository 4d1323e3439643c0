"""Keeps benchmarks/postgres.py from rotting: a quick run must succeed and verify, and a
run whose pgbench baseline fails must fail and say so."""

from __future__ import annotations

import re
from pathlib import Path

from .benchmark_runs import broken_program, quick, run_quick


def test_postgres_benchmark_quick() -> None:
    out = quick("postgres.py")
    # each row: its label, then a measured number (not "n/a", "failed" or "skipped")
    for label in (
        r"\(a\) psycopg two-row transactions/s, before \(b\)",
        r"\(a\) psycopg two-row transactions/s, after \(b\)",
        r"\(a'\) pgbench two-row transactions/s",
        r"\(b\) backstate transitions/s \(1 node\)",
        r"transitions per commit \(group commit\)",
        r"send-and-settle latency p50 / p99 \(ms\)",
        r"b/a \(backstate / psycopg loop\)",
        r"b/a' \(backstate / pgbench\)",
    ):
        assert re.search(rf"^\s*{label}\s+[\d,.]+", out, re.MULTILINE), (label, out)
    assert "verified=False" not in out, out


def test_postgres_benchmark_fails_when_pgbench_fails(tmp_path: Path) -> None:
    proc = run_quick("postgres.py", env=broken_program(tmp_path, "pgbench"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"^FAILED:\n  peer \(a'\) pgbench failed: ", proc.stdout, re.M), proc.stdout
