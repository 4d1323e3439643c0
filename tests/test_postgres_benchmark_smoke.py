"""Keeps benchmarks/postgres.py from rotting: a quick run must succeed and verify."""

from __future__ import annotations

import re

from .benchmark_runs import quick


def test_postgres_benchmark_quick() -> None:
    out = quick("postgres.py")
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
