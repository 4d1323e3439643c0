"""The real `backstate` command (a subprocess) against a real `backstate serve` process
(tests/server's ``Server``, one per module), configured the way users configure it: the
credentials file the server wrote, found through ``$BACKSTATE_HOME``."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.server.test_e2e import Server

BACKSTATE = str(Path(sys.executable).parent / "backstate")
FILES = Path(__file__).with_name("files")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "new_user: installs backstate into a fresh virtualenv and follows the README (slow)",
    )


@dataclass(frozen=True)
class Result:
    status: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.status == 0, self.stderr
        return json.loads(self.stdout)

    def json_any(self) -> Any:
        """The JSON document, whatever the exit status."""
        return json.loads(self.stdout)

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def error(self) -> str:
        """The one line a failing command prints."""
        lines = self.stderr.splitlines()
        assert len(lines) == 1, self.stderr
        return lines[0]


@dataclass(frozen=True)
class Cli:
    home: Path

    def __call__(self, *args: str, input: str | None = None, ok: bool = True) -> Result:
        done = subprocess.run(
            [BACKSTATE, *args],
            capture_output=True,
            text=True,
            input=input if input is not None else "",
            env=self.env(),
            timeout=120,
        )
        result = Result(done.returncode, done.stdout, done.stderr)
        if ok:
            assert result.status == 0, f"{args}: {result.status}\n{result.stdout}{result.stderr}"
        return result

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
        return {**env, "BACKSTATE_HOME": str(self.home)}

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [BACKSTATE, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
        )

    def start(self, *args: str, command: str = BACKSTATE) -> Running:
        """A long-running command (``dev``, ``watch``) whose output lines are read as
        they come."""
        process = subprocess.Popen(
            [command, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env(),
        )
        return Running(process)


class Running:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """The first line from now on matching ``pattern`` (a regex, searched)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in {self.seen}") from None
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("cli"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def cli(server: Server) -> Cli:
    """The command, with the server's credentials file as its configuration (the
    server writes ``<tmp>/credentials.json``: ``<tmp>`` is ``$BACKSTATE_HOME``)."""
    return Cli(server.creds_path.parent)


@pytest.fixture
def name() -> str:
    """A fresh machine name: tests share their module's server."""
    return "t-" + uuid.uuid4().hex[:10]


def deploy_greeter(cli: Cli, machine: str, *extra: str) -> str:
    """Create ``machine`` from files/greeter.py (version reference 1.0.0); its version id."""
    created = cli(
        "--json",
        "machines",
        "create",
        "-m",
        machine,
        "--file",
        str(FILES / "greeter.py"),
        "-r",
        "1.0.0",
        *extra,
    ).json()
    version: str = created["machineVersionId"]
    return version
