"""Keeps benchmarks/durable.py from rotting: a quick run without DBOS must succeed, and
a run whose DBOS peer cannot run must fail and say so."""

from __future__ import annotations

import re
from pathlib import Path

from .benchmark_runs import broken_package, quick, run_quick


def test_durable_benchmark_quick_without_dbos() -> None:
    out = quick("durable.py", "--skip-dbos")
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


def test_durable_benchmark_fails_when_dbos_fails(tmp_path: Path) -> None:
    # Without dbos installed the run fails for that; with it, the DBOS worker imports the
    # broken stand-in and dies (as it did when benchmarks/http.py hid the stdlib's http).
    proc = run_quick(
        "durable.py", "--dbos-configs", "loop-10", env=broken_package(tmp_path, "dbos")
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"^FAILED:\n  peer DBOS", proc.stdout, re.MULTILINE), proc.stdout
