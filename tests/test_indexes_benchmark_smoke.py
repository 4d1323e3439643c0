"""Keeps benchmarks/indexes.py from rotting: a quick run must succeed and verify."""

from __future__ import annotations

import re

from .benchmark_runs import quick


def test_indexes_benchmark_quick() -> None:
    out = quick("indexes.py")
    assert re.search(r"^\s+16,000 via SQLiteStore\.commit .*: [\d,]+ instances/s", out, re.M), out
    assert re.search(r"^\s+4,000 via Backstate\.create .*: [\d,]+ creates/s", out, re.M), out
    # each row: its label, then the number of samples and measured p50 / p99 (not "n/a")
    for label in (
        r"get, not in the runtime's cache",
        r"get, in the runtime's cache",
        r"eq owner \(limit 50\)",
        r"gte total, ascending \(limit 50\)",
        r"lt total, descending \(limit 50\)",
        r"eq @state \(limit 50\)",
        r"eq owner, next page by cursor \(limit 50\)",
        r"gte 0 from a cursor at a random depth",
    ):
        assert re.search(rf"^{label}\s+[\d,]+\s+[\d.]+\s+[\d.]+\s", out, re.M), (label, out)
    assert out.count("EXPLAIN QUERY PLAN") == 1, out
    assert len(re.findall(r"^    (store|seek) +\[", out, re.M)) == 12, out
    assert re.search(r"^bar: get p99 < 5 ms: (PASS|FAIL) \([\d.]+ ms", out, re.M), out
    assert re.search(r"^bar: eq query \(limit 50\) p99 < 10 ms: (PASS|FAIL) \([\d.]+ ms", out, re.M)
    assert "rows checked against the runtime's: ok" in out, out
    assert "verified: " in out, out
