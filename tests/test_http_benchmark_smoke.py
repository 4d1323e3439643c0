"""Keeps benchmarks/serve_http.py from rotting: a quick run against a real server and its
peers must succeed, and a run whose server or a peer (Restate, the --trusted server)
cannot start must fail and say so."""

from __future__ import annotations

import re
from pathlib import Path

from .benchmark_runs import broken_command, broken_program, quick, run_quick

NUM = r"-?[\d,.]+"

# The first run installs wrk, Restate's server (about 225 MB from npm) and its SDK.
FIRST_INSTALL = 600


def test_http_benchmark_quick() -> None:
    out = quick("serve_http.py", timeout=FIRST_INSTALL)
    for label in (
        "send-event",
        "peer: send-event, --trusted",
        "get",
        "peer: Restate counter/add",
        "peer: no-op uvicorn",
    ):
        row = rf"^{label}\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}\s+0$"
        assert re.search(row, out, re.M), (label, out)
    for label in (r"/rt update after response", r"/rt update after request"):
        assert re.search(rf"^{label}\s+{NUM}\s+{NUM}\s+{NUM}\s+0$", out, re.M), (label, out)
    assert re.search(r"^send-event / no-op uvicorn app: \d+\.\d\d ", out, re.M), out
    assert re.search(r"^send-event / --trusted: \d+\.\d\d ", out, re.M), out
    assert re.search(r"^send-event / Restate counter/add: \d+\.\d\d ", out, re.M), out
    assert re.search(r"^Restate: .* adds answered, .*: verified=True$", out, re.M), out
    assert re.search(r"namespace listens on (127\.0\.0\.1:\d+(, )?)+ only$", out, re.M), out
    assert re.search(r"^bar: .*, sandboxed: (PASS|FAIL) \(", out, re.M), out
    assert "failed" not in out and "FAILED" not in out, out


def test_http_benchmark_fails_when_restate_fails(tmp_path: Path) -> None:
    proc = run_quick(
        "serve_http.py", env=broken_program(tmp_path, "unshare"), timeout=FIRST_INSTALL
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"^peer: Restate counter/add\s+failed: ", proc.stdout, re.M), proc.stdout
    assert re.search(r"^FAILED:\n  peer Restate: ", proc.stdout, re.M), proc.stdout


def test_http_benchmark_fails_when_the_trusted_server_fails(tmp_path: Path) -> None:
    proc = run_quick(
        "serve_http.py", "--skip-restate", env=broken_command(tmp_path, "--trusted"), timeout=300
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(rf"^send-event\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}\s+0$", out, re.M), out
    assert re.search(r"^peer: send-event, --trusted\s+failed: .*broken by a test", out, re.M), out
    assert re.search(r"^FAILED:\n  peer backstate serve --trusted: ", out, re.M), out


def test_http_benchmark_fails_when_the_sandbox_fails(tmp_path: Path) -> None:
    # serve refuses to start without bubblewrap (and names it); --trusted would start.
    proc = run_quick("serve_http.py", "--skip-restate", env=broken_program(tmp_path, "bwrap"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(
        r"^FAILED: backstate serve \(sandboxed\) did not start: ", proc.stdout, re.M
    ), proc.stdout
