"""Keeps benchmarks/http.py from rotting: a quick run against a real server must succeed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "http.py"


def test_http_benchmark_quick() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    num = r"-?[\d,.]+"
    for label in ("send-event", "get"):
        assert re.search(rf"^{label}\s+{num}\s+{num}\s+{num}\s+{num}\s+0$", out, re.M), out
    for label in (r"/rt update after response", r"/rt update after request"):
        assert re.search(rf"^{label}\s+{num}\s+{num}\s+{num}\s+0$", out, re.M), (label, out)
    assert re.search(r"^bar: .* (PASS|FAIL) \(", out, re.M), out
