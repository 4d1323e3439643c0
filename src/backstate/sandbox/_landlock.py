"""Landlock: the kernel's access rules, a layer inside the jail (see _jail).

bubblewrap's mount namespace already makes only what a worker needs exist, and its
network namespace and seccomp keep it off the host's network. Landlock (an unprivileged
Linux security module, 5.13 and later) states the same intent again as rules the worker
cannot drop once it has restricted itself, so a mistake in one layer (a path bound that
should not be, a port listening inside the jail) is not yet a way out:

* files: read and execute only beneath the paths the jail binds read-only; write, make
  and remove only in ``/scratch`` and ``/tmp``; read and write the devices of ``/dev``;
* network (ABI 4 and later): no TCP ``bind``, and ``connect`` only to the egress proxy's
  relay for an effects worker, to nothing for a transition worker;
* scopes (ABI 6 and later): no abstract UNIX socket and no signal outside the worker.

A kernel without Landlock (or with an older ABI) gets what it supports and the other
layers stand; ``abi`` says which. The system calls are made directly (``ctypes``): the
kernel's interface is three calls and three structures, and Python has no maintained
binding.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterable

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446  # x86_64 and aarch64 alike
_PR_SET_NO_NEW_PRIVS = 38
_VERSION = 1  # LANDLOCK_CREATE_RULESET_VERSION
_PATH_BENEATH, _NET_PORT = 1, 2

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_REMOVE_DIR, _REMOVE_FILE, _MAKE_CHAR, _MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
_MAKE_REG, _MAKE_SOCK, _MAKE_FIFO, _MAKE_BLOCK, _MAKE_SYM = (1 << n for n in range(8, 13))
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15  # ABI 2, 3, 5
_BIND_TCP, _CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6

READ = EXECUTE | READ_FILE | READ_DIR
_FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | _TRUNCATE | _IOCTL_DEV  # rights a file can take


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPort(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def abi() -> int:
    """The kernel's Landlock ABI version, 0 where it has none (or it is disabled)."""
    version = _libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_VERSION))
    return max(int(version), 0)


def _fs_rights(version: int) -> int:
    rights = (1 << 13) - 1  # ABI 1: execute .. make_sym
    if version >= 2:
        rights |= _REFER
    if version >= 3:
        rights |= _TRUNCATE
    if version >= 5:
        rights |= _IOCTL_DEV
    return rights


def restrict(
    readable: Iterable[str],
    writable: Iterable[str],
    devices: str | None = "/dev",
    connect_ports: Iterable[int] = (),
) -> int:
    """Restrict this process (all its threads to come, and what it could start) to the
    rules in the module docstring: read beneath ``readable``, anything beneath
    ``writable``, read and write beneath ``devices``, TCP connections to
    ``connect_ports`` only. Paths that do not exist are passed over. Returns the ABI
    applied (0: none, the kernel has no Landlock). Irrevocable."""
    version = abi()
    if version == 0:
        return 0
    fs = _fs_rights(version)
    # What an older kernel's structure has no field for stays 0 (it accepts that).
    attr = _RulesetAttr(
        fs,
        _BIND_TCP | _CONNECT_TCP if version >= 4 else 0,
        _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL if version >= 6 else 0,
    )
    ruleset = _libc.syscall(
        _CREATE_RULESET,
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
        ctypes.c_uint32(0),
    )
    if ruleset < 0:
        raise _error("landlock_create_ruleset")
    try:
        for paths, rights in (
            (readable, READ),
            (writable, fs),
            ([devices] if devices else [], READ_FILE | WRITE_FILE | READ_DIR | (fs & _IOCTL_DEV)),
        ):
            for path in paths:
                _allow_path(ruleset, path, rights)
        if version >= 4:
            for port in connect_ports:
                rule = _NetPort(_CONNECT_TCP, port)
                if _libc.syscall(_ADD_RULE, ruleset, _NET_PORT, ctypes.byref(rule), 0) < 0:
                    raise _error("landlock_add_rule (port)")
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0:
            raise _error("prctl(PR_SET_NO_NEW_PRIVS)")
        if _libc.syscall(_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) < 0:
            raise _error("landlock_restrict_self")
    finally:
        os.close(ruleset)
    return version


def _allow_path(ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if not os.path.isdir(path):
            rights &= _FILE_ONLY
        rule = _PathBeneath(rights, fd)
        if _libc.syscall(_ADD_RULE, ruleset, _PATH_BENEATH, ctypes.byref(rule), 0) < 0:
            raise _error(f"landlock_add_rule ({path})")
    finally:
        os.close(fd)


def _error(call: str) -> OSError:
    code = ctypes.get_errno() or errno.EINVAL
    return OSError(code, f"{call}: {os.strerror(code)}")
