"""Running a benchmark script's quick mode for the smoke tests that keep it working, and
stand-ins for peers that cannot run, to check that a run with a failed peer fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_quick(
    script: str, *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``benchmarks/<script> --quick <args>``, finished, with ``env`` over this process's."""
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def quick(script: str, *args: str, timeout: float = 120) -> str:
    """``benchmarks/<script> --quick <args>``'s output; it must exit 0."""
    proc = run_quick(script, *args, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _first_on(variable: str, folder: Path) -> dict[str, str]:
    rest = os.environ.get(variable)
    return {variable: os.pathsep.join([str(folder), *([rest] if rest else [])])}


def broken_package(folder: Path, name: str) -> dict[str, str]:
    """The environment of a run in which importing the package ``name`` fails, in this
    process and in every Python process it starts."""
    (folder / name).mkdir()
    (folder / name / "__init__.py").write_text(f"raise ImportError('{name}: broken by a test')\n")
    return _first_on("PYTHONPATH", folder)


def broken_program(folder: Path, name: str) -> dict[str, str]:
    """The environment of a run in which the program ``name`` on the PATH fails."""
    program = folder / name
    program.write_text(f"#!/bin/sh\necho '{name}: broken by a test' >&2\nexit 1\n")
    program.chmod(0o755)
    return _first_on("PATH", folder)


def broken_command(folder: Path, argument: str) -> dict[str, str]:
    """The environment of a run in which every Python process started with ``argument``
    on its command line exits at once (a ``sitecustomize`` on ``PYTHONPATH``; processes
    started with ``python -I``, as sandboxed workers are, do not read it)."""
    (folder / "sitecustomize.py").write_text(
        f"import sys\nif {argument!r} in sys.argv:\n    sys.exit('{argument}: broken by a test')\n"
    )
    return _first_on("PYTHONPATH", folder)
