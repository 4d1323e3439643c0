"""The jail a worker runs in, built from the kernel's own isolation.

From outside (the server starts each worker through bubblewrap): new user, PID, mount,
network, IPC, UTS and cgroup namespaces; a root file system holding only what Python
needs, read-only (the Python installation, the virtual environment, backstate's own
package, /usr), a fresh /proc that shows the worker's own processes, a minimal /dev, a
size-capped /tmp and the org's scratch folder (the only writable place that lasts); no
environment but a few plain variables; no capabilities; no network but a loopback of
its own (nothing of the host is reachable through it). The worker dies with the server.

From inside (the worker's first act, before any user code, see ``harden``): resource
limits (address space, files, file size, no core dumps); Landlock rules where the kernel
has them (reads only beneath what the jail binds, writes only in scratch and /tmp, no TCP
but an effects worker's egress relay, no signal or abstract socket outside: _landlock);
and a seccomp filter that refuses creating processes, executing programs, tracing,
mounting, new namespaces, raising limits, BPF, keyrings, io_uring and the like, and for
workers that run transition code, every socket but a local (AF_UNIX) one.

What is not available on a host (bubblewrap, user namespaces, seccomp) is named by
``check`` as ``SandboxUnavailable``; Landlock is a layer more where the kernel has it,
not a requirement (``check`` says which ABI the workers get).
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import backstate

from . import _landlock

# Roles of workers: transition code (no network at all) and effects (custom actions and
# services, which may reach what the operator's egress allow-list admits).
TRANSITIONS = "transitions"
EFFECTS = "effects"

_CLONE_THREAD = 0x10000
_AF_UNIX = 1
_DENIED = (
    "execve",
    "execveat",
    "fork",
    "vfork",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "userfaultfd",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "setrlimit",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_by_handle_at",
    "name_to_handle_at",
    "fanotify_init",
    "kcmp",
    "lookup_dcookie",
    "settimeofday",
    "clock_settime",
    "adjtimex",
    "syslog",
)


class SandboxUnavailable(Exception):
    """What this host lacks to run user code in sandboxed workers."""


@dataclass(frozen=True)
class Limits:
    """Per worker: its address space (``memory_bytes``), the CPU time one transition
    (or authorizer, migration, HTTP-API handler) may take and loading a file may take,
    the size of a file it writes, of its /tmp, and how many workers run each org's
    transitions."""

    memory_bytes: int = 256 * 1024 * 1024
    cpu_seconds: float = 1.0
    load_seconds: float = 10.0
    file_bytes: int = 64 * 1024 * 1024
    tmp_bytes: int = 64 * 1024 * 1024
    workers_per_org: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "memory_bytes": self.memory_bytes,
            "cpu_seconds": self.cpu_seconds,
            "load_seconds": self.load_seconds,
            "file_bytes": self.file_bytes,
        }


def bwrap() -> str:
    found = shutil.which("bwrap")
    if found is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed: install the Debian package bubblewrap, "
            "or run with --trusted to run machine code inside the server"
        )
    return found


EGRESS_SOCKET = "/run/egress.sock"  # inside the jail: the org's egress proxy (_egress)
EGRESS_PROXY = ("127.0.0.1", 3128)  # inside the jail's own network: relayed to it


# bubblewrap's own environment. It stays PID 1 of the jail's PID namespace, where the
# worker can read /proc/1/environ: bubblewrap is started with nothing of the server's
# environment (its secrets key, API keys), and gives the worker only what --setenv says.
JAIL_ENV: dict[str, str] = {}


WORKER = ("-m", "backstate.sandbox._worker")  # what the jailed interpreter runs


def command(
    scratch: Path,
    limits: Limits,
    egress: Path | None = None,
    program: tuple[str, ...] = WORKER,
) -> list[str]:
    """The command line that starts one worker in its jail (with the org's egress
    proxy's socket, for an effects worker); ``program``: the interpreter's arguments
    after ``-I`` (another program in the same jail: ``check``, tests)."""
    args = [
        bwrap(),
        "--unshare-all",
        "--unshare-user",
        "--die-with-parent",
        "--new-session",
        "--disable-userns",
        "--cap-drop",
        "ALL",
        "--uid",
        "65534",
        "--gid",
        "65534",
        "--hostname",
        "sandbox",
        "--clearenv",
    ]
    for name, value in (
        ("PATH", "/usr/bin"),
        ("HOME", "/scratch"),
        ("TMPDIR", "/tmp"),
        ("LANG", "C.UTF-8"),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("MALLOC_ARENA_MAX", "2"),  # threads' arenas would take the address space
    ):
        args += ["--setenv", name, value]
    args += ["--ro-bind", "/usr", "/usr"]
    for link in _LINKS:
        target = Path("/") / link
        if target.is_symlink():
            args += ["--symlink", os.readlink(target), str(target)]
        elif target.is_dir():
            args += ["--ro-bind", str(target), str(target)]
    for etc in _ETC:
        args += ["--ro-bind-try", etc, etc]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]
    # After /tmp: an installation under /tmp (a test's fresh clone) is bound over it.
    for path in _python_paths():
        args += ["--ro-bind", str(path), str(path)]
    args += ["--bind", str(scratch), "/scratch", "--chdir", "/scratch"]
    if egress is not None:
        args += ["--bind", str(egress), EGRESS_SOCKET]
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            args += ["--setenv", name, f"http://{EGRESS_PROXY[0]}:{EGRESS_PROXY[1]}"]
    args += ["--", sys.executable, "-I", *program]
    return args


_LINKS = ("bin", "lib", "lib64", "sbin")  # at the root: links into /usr, or directories
_ETC = ("/etc/ld.so.cache", "/etc/localtime", "/etc/ssl/certs", "/etc/ssl/openssl.cnf")


def _readable() -> list[str]:
    """Inside the jail: what it binds read-only (Landlock's read rules)."""
    paths = ["/usr", *(f"/{link}" for link in _LINKS), *_ETC, "/proc"]
    return [*paths, *(str(p) for p in _python_paths())]


def exposed(path: Path) -> bool:
    """Whether ``path`` is inside what every worker's jail binds (read-only): a store
    there would be readable by machine code."""
    resolved = path.resolve()
    return any(resolved.is_relative_to(p) for p in (*_python_paths(), Path("/usr")))


def _python_paths() -> list[Path]:
    """What the worker's interpreter reads: the installation, the virtual environment,
    and backstate's package where it is not inside them (an editable install)."""
    paths = [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()]
    package = Path(backstate.__file__).resolve().parent
    if not any(package.is_relative_to(p) for p in paths):
        paths.append(package.parent)
    executable = Path(sys.executable).resolve()
    if not any(executable.is_relative_to(p) for p in paths):
        paths.append(executable.parent)
    unique: list[Path] = []
    for path in sorted(set(paths), key=lambda p: len(p.parts)):
        if not any(path.is_relative_to(u) for u in unique):
            unique.append(path)
    return unique


def check(scratch: Path) -> int:
    """Raise ``SandboxUnavailable`` unless a jailed interpreter starts here and can
    install its seccomp filter; the Landlock ABI it applied (0: none)."""
    scratch.mkdir(parents=True, exist_ok=True)
    probe = "from backstate.sandbox._jail import harden; print(harden('transitions', None))"
    args = command(scratch, Limits(), program=("-c", probe))
    try:
        done = subprocess.run(args, capture_output=True, timeout=30, check=False, env=JAIL_ENV)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailable(f"bubblewrap could not start a worker: {exc}") from None
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        raise SandboxUnavailable(
            "bubblewrap could not start a sandboxed worker here (user namespaces, or the "
            f"seccomp library, may be missing): {detail[-1] if detail else done.returncode}"
        )
    lines = done.stdout.decode(errors="replace").split()
    return int(lines[-1]) if lines and lines[-1].isdigit() else 0


def harden(role: str, limits: dict[str, Any] | None) -> int:
    """The worker's own limits, Landlock rules and seccomp filter: irrevocable for it and
    its threads. The Landlock ABI applied (0: the kernel has none). Called before the
    worker starts any thread: Landlock holds the calling thread and those it starts
    after (the seccomp filter is synchronized to every thread, as a second guard)."""
    if threading.active_count() > 1:
        raise SandboxUnavailable("a worker must harden itself before it starts a thread")
    if limits is not None:
        memory = int(limits["memory_bytes"])
        files = int(limits["file_bytes"])
        for limit, value in (
            (resource.RLIMIT_AS, memory),
            (resource.RLIMIT_FSIZE, files),
            (resource.RLIMIT_NOFILE, 256),
            (resource.RLIMIT_CORE, 0),
        ):
            resource.setrlimit(limit, (value, value))
    try:
        landlock = _landlock.restrict(
            _readable(),
            ["/scratch", "/tmp"],
            "/dev",
            [EGRESS_PROXY[1]] if role == EFFECTS else [],
        )
    except OSError as exc:  # the kernel has Landlock and refused the rules: a bug of ours
        raise SandboxUnavailable(f"Landlock refused the worker's rules: {exc}") from None
    try:
        import pyseccomp as seccomp  # type: ignore[import-untyped]
    except (ImportError, OSError) as exc:  # no libseccomp on this host
        raise SandboxUnavailable(f"seccomp is unavailable: {exc}") from None
    denied = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    rules.set_attr(seccomp.Attr.CTL_TSYNC, 1)
    for name in _DENIED:
        rules.add_rule(denied, name)
    # Threads only: a clone without CLONE_THREAD is a new process. clone3's flags are
    # out of the filter's reach, so it is unavailable and the C library uses clone.
    rules.add_rule(denied, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_THREAD, 0))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    # Limits can be read, never set (the third argument of prlimit64 is the new one).
    rules.add_rule(denied, "prlimit64", seccomp.Arg(2, seccomp.NE, 0))
    rules.add_rule(denied, "personality", seccomp.Arg(0, seccomp.NE, 0xFFFFFFFF))
    if role == TRANSITIONS:
        rules.add_rule(denied, "socket", seccomp.Arg(0, seccomp.NE, _AF_UNIX))
        rules.add_rule(denied, "socketpair", seccomp.Arg(0, seccomp.NE, _AF_UNIX))
    rules.load()
    return landlock
