"""Keeps benchmarks/durable.py from rotting: a quick run without DBOS must succeed."""

from __future__ import annotations

import re

from .benchmark_runs import quick


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
