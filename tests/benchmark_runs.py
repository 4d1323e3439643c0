"""Running a benchmark script's quick mode for the smoke tests that keep it working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def quick(script: str, *args: str, timeout: float = 120) -> str:
    """``benchmarks/<script> --quick <args>``'s output; it must exit 0."""
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout
