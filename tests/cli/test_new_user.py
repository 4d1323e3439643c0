"""A new user: a fresh virtualenv, `pip install` of this repository, then the README's
five-minute tour, command by command, checking the output the README shows.

Nothing from the test environment is used: the commands run with the fresh
virtualenv's `backstate` first on the PATH and a fresh home folder, in a work folder
holding a copy of examples/ (`scripts/serve` installs `.[examples]` and runs `backstate
dev examples/`; here on a free port instead of 8780). Installing takes a minute or so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Running, free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def tour() -> list[tuple[str, list[str]]]:
    """The tour's commands (`$ ...`) with the lines each is documented to print."""
    text = README.read_text()
    section = text.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    steps: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", section, re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line.rstrip())
    return steps


def normalized(lines: list[str], port: int) -> list[str]:
    def one(line: str) -> str:
        line = line.replace("127.0.0.1:8780", f"127.0.0.1:{port}")
        line = re.sub(r"ver_[A-Za-z0-9_-]{22}", "ver_<id>", line)
        line = re.sub(r"keyId=[^&]+&secret=\S+", "keyId=sbk_...&secret=...", line)
        # The kernel decides which Landlock its workers get (docs/security.md).
        line = re.sub(r"Landlock ABI \d+|no Landlock in this kernel", "Landlock ABI <n>", line)
        return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "<time>", line)

    return [one(line.rstrip()) for line in lines]


def test_the_tour_is_what_the_readme_says() -> None:
    commands = [command for command, _ in tour()]
    assert commands[0] == "scripts/serve"
    assert "exec .venv/bin/backstate dev examples/" in (ROOT / "scripts" / "serve").read_text()
    assert any("instances watch" in c for c in commands)
    assert any("instances send-event" in c for c in commands)


@pytest.mark.new_user
def test_new_user_follows_the_readme(tmp_path: Path) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    venv = work / ".venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{ROOT}[examples]"],
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    shutil.copytree(ROOT / "examples", work / "examples", ignore=shutil.ignore_patterns("*.db*"))

    path = f"{venv / 'bin'}:{os.environ.get('PATH', '')}"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("BACKSTATE_HOME", "VIRTUAL_ENV", "PYTHONPATH", "COLUMNS")
    }
    env.update(HOME=str(home), PATH=path)
    port = free_port()
    started: list[tuple[Running, list[str]]] = []

    def start(command: str) -> Running:
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return Running(process)

    try:
        for command, expected in tour():
            want = normalized(expected, port)
            if command.startswith("source "):
                continue  # the fresh virtualenv is first on the PATH
            if command == "scripts/serve":
                dev = start(f"backstate dev examples/ --port {port}")
                started.append((dev, want))
                for line in want:
                    assert normalized([dev.wait_for(".", timeout=60).string], port) == [line]
            elif " watch " in command:
                watch = start(command)
                started.append((watch, want))
                # The current state first; the rest comes after later commands.
                assert normalized([watch.wait_for(".").string], port) == want[:1]
            else:
                done = subprocess.run(
                    ["bash", "-c", command],
                    cwd=work,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
                assert normalized(done.stdout.splitlines(), port) == want, command
        for running, want in started:
            for line in want[len(running.seen) :]:
                assert normalized([running.wait_for(".").string], port) == [line]
    finally:
        for running, _ in reversed(started):
            running.stop()
    assert (home / ".backstate" / "credentials.json").exists()
