"""Keeps benchmarks/engine.py from rotting: a quick backstate-only run must succeed.

Also keeps every benchmark script runnable at all: a script's own folder is first on its
import path (and on that of every Python subprocess started from it), so a module there
named like a standard library module or a peer's package replaces it there."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .benchmark_runs import BENCHMARKS, broken_package, quick, run_quick

# The packages the peers import (DBOS, the Python statechart libraries, Restate's SDK).
PEER_PACKAGES = {"dbos", "transitions", "statemachine", "sismic", "restate", "hypercorn"}


def test_no_benchmark_module_shadows_a_library() -> None:
    names = {p.stem for p in BENCHMARKS.glob("*.py")}
    assert names, BENCHMARKS
    assert not names & set(sys.stdlib_module_names), names & set(sys.stdlib_module_names)
    assert not names & PEER_PACKAGES, names & PEER_PACKAGES


def test_engine_benchmark_quick_backstate_only() -> None:
    out = quick("engine.py", "--only", "backstate")
    for machine in ("flat", "deep", "parallel"):
        # a table row: the machine name, then a measured rate (not "n/a")
        assert re.search(rf"^\W*{machine}\W+[\d,]+\b", out, re.MULTILINE), out
    assert "machines constructed/s" in out


def test_engine_benchmark_fails_when_a_peer_fails(tmp_path: Path) -> None:
    proc = run_quick(
        "engine.py", "--only", "backstate,sismic", env=broken_package(tmp_path, "sismic")
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"^FAILED peer sismic: cannot import", proc.stderr, re.M), proc.stderr


def test_idempotency_benchmark_quick_on_both_stores() -> None:
    out = quick("idempotency.py")
    for store in ("SQLite", "PostgreSQL"):
        # a table row: two measured rates and their ratio, every run verified
        assert re.search(rf"^{store}\s+[\d,]+\s+[\d,]+\s+\d\.\d\d", out, re.MULTILINE), out
    assert "VERIFY FAILED" not in out
    assert re.search(r"repeats answered without applying: [1-9]", out), out
