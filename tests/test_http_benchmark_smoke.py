"""Keeps benchmarks/http_api.py from rotting: a quick run against a real server must succeed."""

from __future__ import annotations

import re

from .benchmark_runs import quick


def test_http_benchmark_quick() -> None:
    out = quick("http_api.py", timeout=60)
    num = r"-?[\d,.]+"
    for label in ("send-event", "get", "peer: no-op uvicorn"):
        assert re.search(rf"^{label}\s+{num}\s+{num}\s+{num}\s+{num}\s+0$", out, re.M), out
    for label in (r"/rt update after response", r"/rt update after request"):
        assert re.search(rf"^{label}\s+{num}\s+{num}\s+{num}\s+0$", out, re.M), (label, out)
    assert re.search(r"^send-event / no-op uvicorn app: \d+\.\d\d ", out, re.M), out
    assert re.search(r"^bar: .* (PASS|FAIL) \(", out, re.M), out
