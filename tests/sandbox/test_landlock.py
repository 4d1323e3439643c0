"""Landlock, the layer inside the jail (sandbox/_landlock): a worker that has hardened
itself cannot write, or read, where the jail's mounts alone would let it, cannot open a
TCP connection or listen, and cannot signal outside itself. Each case is run twice in a
real jail with a hole made on purpose (a writable and a readable host folder bound in,
a port listening inside): hardened, the hole is closed; not hardened, it is open (so the
test sees Landlock's work, not the mounts')."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from backstate.sandbox._jail import EFFECTS, TRANSITIONS, Limits, check, command
from backstate.sandbox._landlock import abi

pytestmark = pytest.mark.xfail(
    abi() == 0, reason="this kernel has no Landlock (the other layers stand)", strict=True
)

PROBE = r"""
import errno, json, os, socket, sys
from backstate.sandbox._jail import harden
listening = socket.socket()
listening.bind(("127.0.0.1", 4000))
listening.listen()
applied = harden(sys.argv[1], None) if sys.argv[2] == "harden" else None
found = {"abi": applied}
def attempt(name, act):
    try:
        act()
        found[name] = "ok"
    except OSError as exc:
        found[name] = errno.errorcode.get(exc.errno, str(exc.errno))
def write(path):
    with open(path, "w") as f:
        f.write("x")
def read(path):
    with open(path) as f:
        f.read()
attempt("write_scratch", lambda: write("/scratch/note"))
attempt("write_tmp", lambda: write("/tmp/note"))
attempt("write_hole", lambda: write("/hole-rw/note"))
attempt("read_hole", lambda: read("/hole-ro/secret"))
attempt("list_hole", lambda: os.listdir("/hole-ro"))
attempt("read_code", lambda: read(os.path.join(os.path.dirname(socket.__file__), "os.py")))
attempt("connect", lambda: socket.create_connection(("127.0.0.1", 4000), timeout=2).close())
attempt("bind", lambda: socket.socket().bind(("127.0.0.1", 4001)))
attempt("signal_outside", lambda: os.kill(1, 0))
print(json.dumps(found))
"""


def _probe(tmp_path: Path, role: str, harden: bool) -> dict[str, Any]:
    scratch, rw, ro = tmp_path / "scratch", tmp_path / "rw", tmp_path / "ro"
    for folder in (scratch, rw, ro):
        folder.mkdir(exist_ok=True)
        folder.chmod(0o777)
    (ro / "secret").write_text("the operator's")
    (ro / "secret").chmod(0o644)
    args = command(scratch, Limits(), program=("-c", PROBE, role, "harden" if harden else "-"))
    holes = ["--bind", str(rw), "/hole-rw", "--ro-bind", str(ro), "/hole-ro"]
    at = args.index("--")
    args[at:at] = holes
    done = subprocess.run(args, capture_output=True, timeout=60, check=False, text=True)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_without_it_the_holes_are_open(tmp_path: Path) -> None:
    found = _probe(tmp_path, EFFECTS, harden=False)
    for name in ("write_hole", "read_hole", "list_hole", "connect", "bind", "signal_outside"):
        assert found[name] == "ok", name


def test_an_effects_worker_is_held_to_its_rules(tmp_path: Path) -> None:
    found = _probe(tmp_path, EFFECTS, harden=True)
    assert found["abi"] == abi() > 0
    assert found["write_scratch"] == found["write_tmp"] == found["read_code"] == "ok"
    assert found["write_hole"] == found["read_hole"] == found["list_hole"] == "EACCES"
    if abi() >= 4:  # TCP rules: no connection but to the egress relay's port, no listening
        assert found["connect"] == found["bind"] == "EACCES"
    if abi() >= 6:  # scopes: no signal outside the worker's own domain
        assert found["signal_outside"] == "EPERM"


def test_a_transition_worker_is_held_to_its_rules(tmp_path: Path) -> None:
    found = _probe(tmp_path, TRANSITIONS, harden=True)
    assert found["write_scratch"] == "ok"
    assert found["write_hole"] == found["read_hole"] == "EACCES"
    # Its seccomp filter refuses a TCP socket before Landlock is asked.
    assert found["connect"] == found["bind"] == "EPERM"


def test_the_host_check_reports_the_abi_workers_get(tmp_path: Path) -> None:
    assert check(tmp_path / "check") == abi()
