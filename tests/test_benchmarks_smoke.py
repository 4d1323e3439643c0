"""Keeps benchmarks/engine.py from rotting: a quick backstate-only run must succeed."""

from __future__ import annotations

import re

from .benchmark_runs import quick


def test_engine_benchmark_quick_backstate_only() -> None:
    out = quick("engine.py", "--only", "backstate")
    for machine in ("flat", "deep", "parallel"):
        # a table row: the machine name, then a measured rate (not "n/a")
        assert re.search(rf"^\W*{machine}\W+[\d,]+\b", out, re.MULTILINE), out
    assert "machines constructed/s" in out
