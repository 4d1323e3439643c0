"""A hostile machine file, uploaded by a second org in tests/sandbox/test_attacks.py.

Each ``probe`` event names an attack; the attack runs in transition code (an assign)
or, with ``"in": "service"``, in a service, and its outcome lands in the public
context under its name: ``"LEAKED: ..."`` when it did what it must not be able to do,
``"blocked: <exception>"`` when the sandbox stopped it. Other events hang, exhaust
memory, flood output or write garbage, to show that only this org's request pays.
The paths and ports it aims at come in the instance's input.
"""

import contextlib
import ctypes
import os
import socket
import subprocess
import time
from typing import Any

from backstate.chart import assign, setup

SYS_FORK = 57  # x86_64
SYS_PTRACE = 101
RLIMIT_AS = 9


class RLimit(ctypes.Structure):
    _fields_ = [("cur", ctypes.c_ulong), ("max", ctypes.c_ulong)]


def _connect(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return f"connected to 127.0.0.1:{port}"


def _fork() -> str:
    for _ in range(50):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
    return "forked"


def _syscall_fork() -> str:
    pid = ctypes.CDLL(None, use_errno=True).syscall(SYS_FORK)
    if pid == 0:
        os._exit(0)
    if pid < 0:
        raise OSError(ctypes.get_errno(), "fork by syscall failed")
    return f"forked {pid} by syscall"


def _raise_memory_limit() -> str:
    libc = ctypes.CDLL(None, use_errno=True)
    unlimited = RLimit(ctypes.c_ulong(-1).value, ctypes.c_ulong(-1).value)
    if libc.prlimit(0, RLIMIT_AS, ctypes.byref(unlimited), None) != 0:
        raise OSError(ctypes.get_errno(), "prlimit failed")
    return "raised the address-space limit"


def _ptrace() -> str:
    if ctypes.CDLL(None, use_errno=True).syscall(SYS_PTRACE, 16, 1, 0, 0) != 0:  # ATTACH pid 1
        raise OSError(ctypes.get_errno(), "ptrace failed")
    return "attached to pid 1"


def _server_proc(target: dict[str, Any]) -> str:
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    if str(target["serverPid"]) in pids or len(pids) > 10:
        return f"sees the host's processes: {len(pids)}"
    with open(f"/proc/{target['serverPid']}/environ", "rb") as f:
        return f.read(64).decode(errors="replace")


def _environ(target: dict[str, Any]) -> str:
    """The server's environment (the test puts a marker in it): in this process's, or in
    that of any process it can see (bubblewrap is the jail's PID 1)."""
    marker = os.environ.get("BACKSTATE_ATTACK_MARKER")
    if marker is not None:
        return marker
    for pid in os.listdir("/proc"):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/environ", "rb") as f:
                found = f.read()
            if b"BACKSTATE_ATTACK_MARKER" in found:
                return f"/proc/{pid}/environ: {found[:120]!r}"
    raise LookupError(f"not in the environment ({sorted(os.environ)}) nor in /proc's")


def _write_outside(target: dict[str, Any]) -> str:
    with open(target["outside"], "w") as f:
        f.write("pwned")
    return f"wrote {target['outside']}"


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read(64).hex()


def _hijack_relay() -> str:
    """Have a thread that was there before the worker hardened itself (in an effects
    worker, the egress relay's) run our code: its next connection calls a ``socket``
    of ours, which forks by raw syscall. Blocked if every thread is held to the rules."""
    import sys
    import threading

    if not any(t.name == "egress relay" for t in threading.enumerate()):
        raise LookupError("no relay in this worker")
    main = sys.modules["__main__"]  # the worker's module, whose globals the relay reads
    real = main.socket
    ran = threading.Event()
    outcome: list[str] = []

    class Hijacked:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def socket(self, *args: Any) -> Any:
            main.socket = real
            try:
                outcome.append(_syscall_fork())
            except BaseException as exc:
                outcome.append(f"blocked: {type(exc).__name__}: {exc}")
            finally:
                ran.set()
            return real.socket(*args)

    main.socket = Hijacked()
    try:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", 3128), timeout=2).close()
        if not ran.wait(1):
            raise TimeoutError("the relay did not run our code")
    finally:
        main.socket = real
    if outcome[0].startswith("blocked"):
        raise PermissionError(outcome[0])
    return f"the relay thread {outcome[0]}"


def _inherited_files() -> str:
    """A file of the host left open in the worker (the store's, a log) would be readable
    whatever the jail binds: only pipes, sockets and the jail's own files may be open."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("/") and not target.startswith(
                ("/dev/null", "/scratch", "/tmp", f"/proc/{os.getpid()}/", "/proc/self/")
            ):
                found.append(f"{fd} -> {target}")
    if not found:
        raise LookupError("only pipes, sockets and the jail's own files are open")
    return ", ".join(found)


ATTACKS: dict[str, Any] = {
    "read_db": lambda t: _read(t["db"]),
    "read_credentials": lambda t: _read(t["credentials"]),
    "read_other_org": lambda t: str(os.listdir(t["otherScratch"])),
    "environ": _environ,
    "host_proc": _server_proc,
    "connect_postgres": lambda t: _connect(5432),
    "connect_server": lambda t: _connect(t["serverPort"]),
    "write_outside": _write_outside,
    "fork": lambda t: _fork(),
    "subprocess": lambda t: subprocess.run(
        ["/usr/bin/id"], capture_output=True, check=True
    ).stdout.decode(),
    "syscall_fork": lambda t: _syscall_fork(),
    "raise_limits": lambda t: _raise_memory_limit(),
    "ptrace": lambda t: _ptrace(),
    "hijack_relay": lambda t: _hijack_relay(),
    "inherited_files": lambda t: _inherited_files(),
}


def attempt(name: str, target: dict[str, Any]) -> str:
    if name == "scratch":  # what is allowed: the org's own scratch folder
        with open("/scratch/note", "w") as f:
            f.write("mine")
        with open("/scratch/note") as f:
            return "wrote " + f.read()
    try:
        return "LEAKED: " + str(ATTACKS[name](target))[:200]
    except BaseException as exc:
        return f"blocked: {type(exc).__name__}: {exc}"[:300]


def probe(context: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    return {**context["public"], event["attack"]: attempt(event["attack"], context["target"])}


async def attack_service(input: dict[str, Any]) -> str:
    return attempt(input["attack"], input["target"])


def spin(context: Any, event: Any) -> Any:
    while True:
        pass


def hog(context: Any, event: Any) -> Any:
    chunks = []
    while True:
        chunks.append(bytearray(64 * 1024 * 1024))


def flood(context: Any, event: Any) -> Any:
    line = "x" * 1000
    for _ in range(10_000):  # 10 MB through print, 10 MB straight to the descriptors
        print(line)
        os.write(1, line.encode() + b"\n")
    return {**context["public"], "flooded": True}


def garbage(context: Any, event: Any) -> Any:
    for fd in range(3, 12):
        with contextlib.suppress(OSError):
            os.write(fd, b"\xff\x00\x00\x10garbage" * 64)
    return context["public"]


def slow(context: Any, event: Any) -> Any:
    deadline = time.process_time() + float(event.get("seconds", 0.5))
    while time.process_time() < deadline:
        pass
    return {**context["public"], "slow": True}


def sleeping_guard(context: Any, event: Any) -> bool:
    time.sleep(30)
    return True


def blocking_service(input: Any) -> str:
    time.sleep(float(input["seconds"]))  # synchronous: a thread of the effects worker
    return "slept"


machine = setup(
    actors={"attack": attack_service, "blocking": blocking_service},
    guards={"sleeps": sleeping_guard},
).create_machine(
    {
        "id": "attacker",
        "initial": "idle",
        "context": lambda input: {"public": {}, "target": input},
        "states": {
            "idle": {
                "on": {
                    "probe": [
                        {
                            "guard": lambda c, e: e.get("in") == "service",
                            "target": "attacking",
                            "actions": assign({"pending": lambda c, e: e["attack"]}),
                        },
                        {"actions": assign({"public": probe})},
                    ],
                    "spin": {"actions": assign({"public": spin})},
                    "spin_authorizer": {"actions": assign({"public": lambda c, e: c["public"]})},
                    "hog": {"actions": assign({"public": hog})},
                    "flood": {"actions": assign({"public": flood})},
                    "garbage": {"actions": assign({"public": garbage})},
                    "slow": {"actions": assign({"public": slow})},
                    "sleep": {"guard": "sleeps", "target": "idle"},
                    "block": "blocking",
                }
            },
            "attacking": {
                "invoke": {
                    "src": "attack",
                    "input": lambda c, e: {"attack": e["attack"], "target": c["target"]},
                    "onDone": {
                        "target": "idle",
                        "actions": assign(
                            {
                                "public": lambda c, e: {
                                    **c["public"],
                                    "service:" + c["pending"]: e["output"],
                                }
                            }
                        ),
                    },
                    "onError": "idle",
                }
            },
            "blocking": {
                "invoke": {
                    "src": "blocking",
                    "input": lambda c, e: {"seconds": e.get("seconds", 3)},
                    "onDone": "idle",
                    "onError": "idle",
                }
            },
        },
    }
)


def allow_read(**kwargs: Any) -> bool:
    return True


def allow_write(*, event: Any = None, **kwargs: Any) -> bool:
    if event is not None and event.get("type") == "spin_authorizer":
        while True:
            pass
    return True


def spin_handler(request: Any) -> Any:
    while True:
        pass


http_api = {"spin": {"handler": spin_handler, "response_mapper": lambda r: {"statusCode": 200}}}
