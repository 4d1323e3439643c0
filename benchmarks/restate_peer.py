"""The Restate peer of ``serve_http.py``: Restate's server and a Virtual Object
(``restate_counter.py``) served by Restate's Python SDK on hypercorn, which is what a
user would run instead of backstate for keyed durable state over HTTP.

Installed on first use into ``benchmarks/.restate/`` (git-ignored), once per version:

* the server from npm, ``@restatedev/restate-server`` (its platform package ships the
  binary), with ``--ignore-scripts``: the only install script is a dependency's
  (``@scarf/scarf``) usage report, which would try to reach the network;
* the SDK and hypercorn from PyPI, into a virtual environment of their own.

Everything runs in a network namespace of its own with only a loopback interface
(``unshare --net``): the server binds 127.0.0.1 there, and reaches nothing beyond it
whatever it tries (Restate 1.7 asks GitHub for its latest release at every start, with no
setting to turn that off; telemetry is off in its configuration). Programs that talk to it,
the load generator included, are started inside that namespace (``RestatePeer.enter``,
``nsenter``). Its data lives in a temporary folder that ``stop`` removes.

Run as a script (inside the namespace), it is the client that registers the service
through the admin API and sums the objects' state afterwards.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".restate"
SERVER_VERSION = "1.7.12"
SDK_PACKAGES = ("restate-sdk==1.3.0", "hypercorn==0.18.0", "uvloop==0.23.0")

# Fixed ports: nothing else listens in the namespace.
INGRESS = "http://127.0.0.1:8080"
ADMIN = "http://127.0.0.1:9070"
SERVICE = "http://127.0.0.1:9080"
ADD_PATH = "/counter/{key}/add"

SERVER_CONFIG = """\
disable-telemetry = true
bind-ip = "127.0.0.1"
listen-mode = "tcp"
node-name = "bench"
shutdown-timeout = "10s"
log-disable-ansi-codes = true

[ingress]
bind-address = "127.0.0.1:8080"

[admin]
bind-address = "127.0.0.1:9070"
disable-web-ui = true
"""

# One process, like `backstate serve`; limits the SDK's documentation raises, so that
# hypercorn never closes the server's HTTP/2 connection under load.
HYPERCORN_CONFIG = """\
bind = ["127.0.0.1:9080"]
workers = 1
worker_class = "uvloop"
h2_max_concurrent_streams = 2147483647
keep_alive_max_requests = 2147483647
keep_alive_timeout = 2147483647
"""


def _run(cmd: list[str], **kwargs: Any) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"{Path(cmd[0]).name} {' '.join(cmd[1:3])} ...: {tail}")
    return proc.stdout


def _once(folder: Path, what: str, make: Callable[[], None]) -> None:
    """``make()`` fills ``folder`` with ``what`` unless an earlier call finished that."""
    done = folder / ".complete"
    if done.exists() and done.read_text() == what:
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    make()
    done.write_text(what)


def install() -> tuple[Path, Path]:
    """The server binary and the SDK environment's python, installed if missing."""
    arch = {"x86_64": "x64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    server = CACHE / f"server-{SERVER_VERSION}"
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm not found on PATH")
    package = f"@restatedev/restate-server@{SERVER_VERSION}"
    _once(
        server,
        package,
        lambda: _run(
            [
                npm,
                "install",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(server),
                package,
            ]
        ),
    )
    binary = server / "node_modules/@restatedev" / f"restate-server-linux-{arch}/bin/restate-server"
    if not binary.exists():
        raise RuntimeError(f"no restate-server binary for linux-{arch} in {server}")

    sdk = CACHE / f"sdk-py{sys.version_info.major}.{sys.version_info.minor}"
    python = sdk / "bin" / "python"

    def make_sdk() -> None:
        _run([sys.executable, "-m", "venv", str(sdk)])
        _run([str(python), "-m", "pip", "install", "--quiet", *SDK_PACKAGES])

    _once(sdk, " ".join(SDK_PACKAGES), make_sdk)
    return binary, python


class RestatePeer:
    """The running peer; ``enter`` prefixes a command to run it inside the namespace."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="backstate-restate-"))
        self.processes: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.holder: subprocess.Popen[str] | None = None
        self.enter: list[str] = []
        self.info: dict[str, Any] = {}
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        server, python = install()
        self.info["server"] = _run([str(server), "--version"]).strip()
        # The namespace lives as long as this process, which waits on a pipe from us.
        user = [] if os.geteuid() == 0 else ["--map-root-user"]
        self.holder = subprocess.Popen(
            [
                "unshare",
                "--net",
                *user,
                "--",
                "sh",
                "-c",
                "ip link set lo up && echo up && exec cat",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.holder.stdout is not None and self.holder.stderr is not None
        if self.holder.stdout.readline().strip() != "up":
            self.holder.wait(10)
            raise RuntimeError(f"no network namespace: {self.holder.stderr.read().strip()}")
        joined = ["--user", "--preserve-credentials"] if user else []
        self.enter = ["nsenter", f"--target={self.holder.pid}", "--net", *joined, "--"]

        (self.folder / "restate.toml").write_text(SERVER_CONFIG)
        (self.folder / "hypercorn.toml").write_text(HYPERCORN_CONFIG)
        self._spawn(
            "restate-server",
            [str(server), "--config-file", "restate.toml", "--base-dir", "data", "--no-logo"],
            self.folder,
        )
        self._spawn(
            "hypercorn",
            [
                str(python),
                "-m",
                "hypercorn",
                "--config",
                str(self.folder / "hypercorn.toml"),
                "restate_counter:app",
            ],
            HERE,
            env={"PYTHONPATH": str(HERE)},
        )
        out = self.inside([sys.executable, __file__, "register"], timeout=90)
        self.info.update(json.loads(out))

    def _spawn(
        self, name: str, cmd: list[str], cwd: Path, env: dict[str, str] | None = None
    ) -> None:
        log = self.folder / f"{name}.log"
        with log.open("wb") as f:
            proc = subprocess.Popen(
                [*self.enter, *cmd],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        self.processes.append((name, proc, log))

    def inside(self, cmd: list[str], timeout: float, stdin: str | None = None) -> str:
        """``cmd``'s output, run inside the namespace; its error and the servers' log
        tails if it fails, or if a server exits meanwhile."""
        proc = subprocess.Popen(
            [*self.enter, *cmd],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + timeout
        pending = stdin
        while True:
            try:
                out, err = proc.communicate(pending, timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pending = None
                gone = [name for name, p, _ in self.processes if p.poll() is not None]
                if gone or time.monotonic() > deadline:
                    proc.kill()
                    proc.communicate()
                    why = f"{', '.join(gone)} exited" if gone else f"timed out after {timeout:g} s"
                    raise RuntimeError(f"{why}; {self.log_tails()}") from None
        if proc.returncode != 0:
            raise RuntimeError(f"{err.strip()[-300:]}; {self.log_tails()}")
        return out

    def log_tails(self) -> str:
        tails = []
        for name, proc, log in self.processes:
            lines = log.read_text(errors="replace").strip().splitlines()[-3:]
            state = "running" if proc.poll() is None else f"exited {proc.returncode}"
            tails.append(f"{name} ({state}): {' | '.join(lines)}")
        return "; ".join(tails)

    def total(self, keys: list[str]) -> int:
        """The sum of the objects' counts, read through the ingress."""
        out = self.inside([sys.executable, __file__, "total"], timeout=120, stdin=json.dumps(keys))
        return int(out)

    def stop(self) -> None:
        for _name, proc, _log in reversed(self.processes):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()
        if self.holder is not None:
            if self.holder.stdin is not None:
                self.holder.stdin.close()
            try:
                self.holder.wait(10)
            except subprocess.TimeoutExpired:
                self.holder.kill()
                self.holder.wait()
            for pipe in (self.holder.stdout, self.holder.stderr):
                if pipe is not None:
                    pipe.close()
            self.holder = None
        shutil.rmtree(self.folder, ignore_errors=True)


# --------------------------------------------------------------------------- inside


def _call(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
    return json.loads(text) if text else None


def _until(what: str, call: Callable[[], Any], deadline: float) -> Any:
    while True:
        try:
            return call()
        except (OSError, urllib.error.HTTPError) as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"Restate: {what}: {exc}") from None
            time.sleep(0.2)


def _listening() -> list[str]:
    """This namespace's listening TCP sockets, as ``ip:port`` (from /proc/net)."""
    found = []
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state != "0A":  # LISTEN
                    continue
                hex_ip, hex_port = local.split(":")
                raw = bytes.fromhex(hex_ip)
                if size == 4:
                    ip = ".".join(str(b) for b in reversed(raw))
                else:  # four little-endian 32-bit words
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    ip = f"[{words.hex()}]"
                found.append(f"{ip}:{int(hex_port, 16)}")
    return sorted(found)


def _register() -> None:
    deadline = time.monotonic() + 60
    _until("admin API", lambda: _call("GET", ADMIN + "/health"), deadline)
    deployment = _until(
        "register the service",
        lambda: _call("POST", ADMIN + "/deployments", {"uri": SERVICE}),
        deadline,
    )
    _until("ingress", lambda: _call("POST", INGRESS + "/counter/ready/get"), deadline)
    print(
        json.dumps(
            {
                "deployment": deployment["id"],
                "sdk": deployment.get("sdk_version"),
                "services": [s["name"] for s in deployment["services"]],
                "listening": _listening(),
            }
        )
    )


def _total() -> None:
    keys = json.load(sys.stdin)
    print(sum(_call("POST", INGRESS + f"/counter/{key}/get") for key in keys))


if __name__ == "__main__":
    {"register": _register, "total": _total}[sys.argv[1]]()
