"""Keeps benchmarks/durable.py from rotting: a quick run without DBOS must succeed and
print every row with a number, and a run whose DBOS peer or sandbox cannot run must fail
and say so."""

from __future__ import annotations

import re
from pathlib import Path

from .benchmark_runs import broken_package, broken_program, quick, run_quick

NUM = r"-?[\d,]+(?:\.\d+)?"
CORES = rf"{NUM}\+{NUM}\+{NUM}"


def test_durable_benchmark_quick_without_dbos() -> None:
    out = quick("durable.py", "--skip-dbos", timeout=240)
    # each row: its label, then a measured number (not "n/a" or "failed")
    for label in (
        r"\(a\) raw SQLite commits/s \(WAL, FULL\), before \(b\)",
        r"\(a\) raw SQLite commits/s \(WAL, FULL\), after \(b\)",
        r"\(b\) backstate transitions/s, trusted",
        r"\(b\) backstate transitions/s, sandboxed",
        r"send-and-settle latency p50 / p99 \(ms\)",
        r"timer lateness p50 / p99 \(ms\)",
        r"b/a \(backstate / raw SQLite\)",
    ):
        assert re.search(rf"^\s*{label}\s+{NUM}\s", out, re.M), (label, out)
    for mode_row in (  # once under each of the two (b) rows
        r"transitions per commit \(group commit\)\s+[\d,.]+",
        rf"CPU cores: event loop \+ threads \+ workers\s+{CORES}\s",
        r"CPU us per transition, same three\s+\d+/\d+/\d+\s",
    ):
        assert len(re.findall(rf"^\s+{mode_row}", out, re.M)) == 2, (mode_row, out)
    assert len(re.findall(r"verified=True", out)) == 2, out
    bar = r"^sandboxed / trusted \(b\)\s+\d+\.\d\d\s+bar >= 0\.8: (PASS|MISS)"
    assert re.search(bar, out, re.M), out
    assert re.search(r"^\(c\) DBOS Transact steps/s\s+skipped", out, re.M), out
    # the scaling table: every cell measured, for 1 and 4 orgs
    assert re.search(rf"^trusted \(reference, in-process\)\s+{NUM}$", out, re.M), out
    for orgs in (r"1 org \(100 instances\)", r"4 orgs \(25 instances each\)"):
        rows = (
            rf"{orgs}(\s+{NUM}){{3}}",
            rf"  / trusted(\s+{NUM}){{3}}",
            rf"  cores: loop \+ threads \+ workers(\s+{CORES}){{3}}",
            r"  event-loop CPU us per transition(\s+\d+){3}",
            rf"  transitions per commit(\s+{NUM}){{3}}",
        )
        assert re.search("^" + "\n".join(rows) + "$", out, re.M), (orgs, out)
    assert "failed" not in out and "FAILED" not in out, out


def test_durable_benchmark_fails_when_dbos_fails(tmp_path: Path) -> None:
    # Without dbos installed the run fails for that; with it, the DBOS worker imports the
    # broken stand-in and dies (as it did when benchmarks/http.py hid the stdlib's http).
    proc = run_quick(
        "durable.py", "--dbos-configs", "loop-10", env=broken_package(tmp_path, "dbos"), timeout=240
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"^FAILED:\n  peer DBOS", proc.stdout, re.M), proc.stdout


def test_durable_benchmark_fails_when_the_sandbox_fails(tmp_path: Path) -> None:
    # No worker can start: every sandboxed row reads "failed", and the run fails.
    proc = run_quick("durable.py", "--skip-dbos", env=broken_program(tmp_path, "bwrap"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(r"^\(b\) backstate transitions/s, trusted\s+[\d,]+\s", out, re.M), out
    assert re.search(r"^\(b\) backstate transitions/s, sandboxed\s+failed\s", out, re.M), out
    assert re.search(r"^1 org \(100 instances\)(\s+failed){3}$", out, re.M), out
    assert re.search(r"^4 orgs \(25 instances each\)(\s+failed){3}$", out, re.M), out
    assert re.search(r"^FAILED:\n  \(b\) sandboxed, 1 org x 1 worker failed: ", out, re.M), out
