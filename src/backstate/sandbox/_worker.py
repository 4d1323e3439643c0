"""A sandboxed worker: runs one org's machine code for the server, inside its jail.

``python -I -m backstate.sandbox._worker``, started by the server through bubblewrap
(see _jail) with the protocol on its stdin and stdout. It first moves the protocol to
descriptors of its own (so that what user code writes to stdout goes to stderr, which
the server reads as a log), reads its configuration, hardens itself, and then answers
calls, each a frame with an ``id`` and an ``op``:

- ``load`` / ``load_migration``: a machine version's or a migration's source, executed
  here; the answer describes it (its state tree, HTTP-API slugs, index selectors);
- ``initial``, ``transition``, ``read``, ``upgrade``, ``dry_run``, ``http``: transition
  code, one call at a time, each under a CPU limit and a limit on the clock half a
  second longer (past either the worker answers ``user-code-timeout`` and exits, to be
  replaced); ``batch``: many such calls in one frame, answered in one;
- ``action``, ``service``, ``cancel``: effects (a worker of the effects role), run
  concurrently, each answered when it ends.

Every answer carries what the code printed or logged meanwhile (capped). The code runs
through the same boundary as in trusted mode (``TrustedCode``), so its errors have the
same codes. A worker that runs out of memory answers so and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from backstate.chart import RunAction, StartActor
from backstate.chart._actions import takes_params
from backstate.machine import (
    MachineModuleError,
    definition,
    load_migration_source,
    load_source,
)
from backstate.runtime import BackstateError, UserRaised
from backstate.runtime._code import TrustedCode, WriteCheck
from backstate.runtime._deployments import Version
from backstate.runtime._effect_runner import EffectId, current_effect_id, run_now
from backstate.runtime._migrations import Migration
from backstate.runtime._progress import checked, current_progress
from backstate.runtime._secrets import current_secrets
from backstate.store import HistoryRow, LogRow

from ._effects import Refs, encode_effects
from ._frames import Unpacker, pack
from ._jail import EFFECTS, EGRESS_PROXY, EGRESS_SOCKET, TRANSITIONS, harden

MAX_LOG_LINES = 200  # per call
MAX_LOG_LINE = 4000  # characters
WALL_MARGIN = 0.5  # seconds on the clock past a call's CPU limit (code that sleeps)
OUT_OF_MEMORY = {"code": "user-code-memory", "message": "the worker ran out of memory"}


class CpuLimit(BaseException):
    """The CPU time of one call ran out (SIGPROF), or its time on the clock (SIGALRM:
    code that sleeps or blocks)."""


class Logs:
    """What one call printed or logged (capped)."""

    __slots__ = ("dropped", "lines")

    def __init__(self) -> None:
        self.lines: list[list[str]] = []
        self.dropped = 0

    def add(self, row: LogRow) -> None:
        if len(self.lines) >= MAX_LOG_LINES:
            self.dropped += 1
        else:
            self.lines.append([row.level, row.message[:MAX_LOG_LINE]])

    def taken(self) -> list[list[str]]:
        if self.dropped:
            return [*self.lines, ["warning", f"{self.dropped} more lines were dropped"]]
        return self.lines


_call_logs: contextvars.ContextVar[Logs] = contextvars.ContextVar("backstate_call_logs")


def _collect(row: LogRow) -> None:
    _call_logs.get().add(row)


class Loaded:
    __slots__ = ("refs", "version")

    def __init__(self, version: Version, refs: Refs) -> None:
        self.version = version
        self.refs = refs


class Worker:
    def __init__(self, out: int, config: dict[str, Any]) -> None:
        self.out = out
        self.role = config["role"]
        self.cpu_seconds = float(config["limits"]["cpu_seconds"])
        self.load_seconds = float(config["limits"]["load_seconds"])
        self.versions: dict[str, Loaded] = {}
        self.migrations: dict[str, Migration] = {}
        self.code = TrustedCode()
        self.code.bind(_collect, lambda: time.time_ns() // 1_000_000)
        self.replies: list[bytes] = []
        self.overran = False
        # The call running now, and the answers so far when it is a batch's.
        self.running: tuple[Any, list[dict[str, Any]] | None] = (None, None)
        self.seconds = 0.0  # the running call's limit

    def reply(self, call_id: Any, body: dict[str, Any]) -> None:
        logs = _call_logs.get(None)
        lines = logs.taken() if logs is not None else []
        self.replies.append(pack({"id": call_id, "logs": lines, **body}))

    def _progress_sink(self, call_id: Any) -> Callable[[Any], None]:
        """Progress of the service of call ``call_id``: a frame to the server at once
        (the service may run in a thread: the frame is written from the loop)."""
        loop = asyncio.get_running_loop()

        def send(data: Any) -> None:
            checked(data)
            frame = pack({"progress": call_id, "data": data})
            loop.call_soon_threadsafe(self._send, frame)

        return send

    def _send(self, frame: bytes) -> None:
        self.replies.append(frame)
        self.flush()

    def flush(self) -> None:
        data = b"".join(self.replies)
        self.replies = []
        while data:
            written = os.write(self.out, data)
            data = data[written:]

    # -- loading ---------------------------------------------------------------------------

    def load(self, call: dict[str, Any]) -> dict[str, Any]:
        try:
            module = load_source(call["source"], call["filename"])
        except MachineModuleError as exc:
            return {"error": {"code": exc.code, "message": exc.message, "line": exc.line}}
        version = Version(
            call["machine"],
            call["version"],
            module.machine,
            module.allow_read,
            module.allow_write,
            http_api=module.http_api,
        )
        self.versions[call["key"]] = Loaded(version, Refs(module.machine))
        return {"ok": definition(module)}

    def load_migration(self, call: dict[str, Any]) -> dict[str, Any]:
        try:
            module = load_migration_source(call["source"], call["filename"])
        except MachineModuleError as exc:
            return {"error": {"code": exc.code, "message": exc.message, "line": exc.line}}
        self.migrations[call["key"]] = Migration(
            call["migration"],
            call["machine"],
            call["from"],
            call["to"],
            module.upgrade_state,
            module.upgrade_context,
        )
        return {"ok": {}}

    # -- transition code ---------------------------------------------------------------------

    def serve_transitions(self, read: int, unpacker: Unpacker, calls: list[Any]) -> None:
        signal.signal(signal.SIGPROF, self._cpu_limit)
        signal.signal(signal.SIGALRM, self._cpu_limit)
        while True:
            for call in calls:
                _call_logs.set(Logs())
                self.handle(call)
                # Each answer leaves before the next call runs: if that call kills this
                # worker, the server knows which calls were answered and which one was
                # running (a batch of a round's calls is one call, one answer).
                self.flush()
            data = os.read(read, 1 << 20)
            if not data:
                return
            calls = unpacker.feed(data)

    def _cpu_limit(self, signum: int, frame: Any) -> None:
        """The running call is out of time: interrupted, and looked at again half a
        second later; code still running then caught the interruption and went on, and
        is cut off here (answered as out of time, then this worker exits), rather than
        at the server's deadline, which for a batch allows for all its calls."""
        if self.overran:
            self.last_of(*self.running, _timed_out(self.seconds))
        self.overran = True
        signal.setitimer(signal.ITIMER_REAL, WALL_MARGIN)
        raise CpuLimit

    def handle(self, call: dict[str, Any]) -> None:
        if call.get("op") == "batch":
            self.batch(call)
            return
        self.running = (call["id"], None)
        body, fatal = self.run(call)
        if fatal:
            self.last_of(call["id"], None, body)
        self.reply(call["id"], body)

    def batch(self, call: dict[str, Any]) -> None:
        """Many transition calls in one frame, answered in one: ``answers`` in their
        order, each with its own logs. A call after which this worker exits ends the
        batch there (the answers so far, that call's included, and its ``error``): the
        calls after it were not run."""
        answers: list[dict[str, Any]] = []
        self.running = (call["id"], answers)
        for sub in call["calls"]:
            _call_logs.set(Logs())
            body, fatal = self.run(sub)
            if fatal:
                self.last_of(call["id"], answers, body)
            answers.append(_with_logs(body))
        _call_logs.set(Logs())
        self.reply(call["id"], {"answers": answers})

    def last_of(
        self, call_id: Any, answers: list[dict[str, Any]] | None, body: dict[str, Any]
    ) -> None:
        """The running call's answer ``body`` is this worker's last: for a batch
        (``answers`` its calls' so far) the batch ends with it, with its logs."""
        if answers is not None:
            answers.append(_with_logs(body))
            _call_logs.set(Logs())
            body = {"answers": answers, **body}
        self.last(call_id, body)

    def last(self, call_id: Any, body: dict[str, Any]) -> None:
        """Answer, then exit: the code ran out of time or memory (a fresh worker takes
        over, since even code that caught the signal was cut off midway)."""
        self.reply(call_id, body)
        self.flush()
        os._exit(0 if body["error"]["code"] == "user-code-timeout" else 70)

    def run(self, call: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """A call's answer, and whether this worker must exit after giving it."""
        op = call.get("op")
        seconds = self.load_seconds if op in ("load", "load_migration") else self.cpu_seconds
        self.seconds = seconds
        body: dict[str, Any]
        try:
            signal.setitimer(signal.ITIMER_PROF, seconds)
            signal.setitimer(signal.ITIMER_REAL, seconds + WALL_MARGIN)
            try:
                if op == "load":
                    body = self.load(call)
                elif op == "load_migration":
                    body = self.load_migration(call)
                else:
                    body = self.transition_call(call)
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
                signal.setitimer(signal.ITIMER_REAL, 0)
        except BackstateError as exc:
            body = {"error": _error(exc)}
        except CpuLimit:
            body = {}
        except MemoryError:
            body = {"error": OUT_OF_MEMORY}
        except Exception as exc:  # the call was malformed, or our own bug
            body = {"error": {"code": "worker-error", "message": _describe(exc)}}
        if self.overran:
            return _timed_out(seconds), True
        if _exhausted(body):
            return {"error": OUT_OF_MEMORY}, True
        return body, False

    def transition_call(self, call: dict[str, Any]) -> dict[str, Any]:
        op = call["op"]
        if op in ("upgrade", "dry_run"):
            return self.migration_call(call)
        loaded = self.versions[call["version"]]
        version = loaded.version
        if op == "initial":
            step = run_now(
                self.code.initial(
                    version, call["instance"], call["input"], call["context"], _check(call)
                )
            )
            return self._step(loaded, step)
        if op == "transition":
            data = call["snapshot"] if "snapshot" in call else orjson.loads(call["snapshotText"])
            snapshot = version.machine.resolve_snapshot(data)
            step = run_now(
                self.code.transition(
                    version, call["instance"], snapshot, call["event"], _check(call)
                )
            )
            return self._step(loaded, step)
        if op == "read":
            allowed = run_now(
                self.code.may_read(
                    version, call["instance"], call["context"], call["state"], call["auth"]
                )
            )
            return {"ok": bool(allowed)}
        if op == "http":
            return self.http_call(version, call)
        raise ValueError(f"unknown op {op!r}")

    def migration_call(self, call: dict[str, Any]) -> dict[str, Any]:
        source = self.versions[call["source"]].version
        target = self.versions[call["target"]].version
        chain = [self.migrations[m] for m in call["chain"]]
        if call["op"] == "upgrade":
            snapshot = source.machine.resolve_snapshot(call["snapshot"])
            upgraded = run_now(self.code.upgrade(source, target, chain, call["instance"], snapshot))
            timers = [list(timer) for timer in upgraded.timers]
            return {"ok": {"snapshot": upgraded.snapshot.to_json(), "timers": timers}}
        rows = [HistoryRow(r["seq"], r["event"], r["snapshot"], 0) for r in call["rows"]]
        report = run_now(self.code.dry_run(source, target, chain, call["instance"], rows))
        return {"ok": report.to_json()}

    def http_call(self, version: Version, call: dict[str, Any]) -> dict[str, Any]:
        """An HTTP-API handler or response mapper, run here (it may not block long: the
        CPU limit of transition code applies)."""
        fn = version.http_api[call["slug"]][call["which"]]
        try:
            result = fn(call["arg"])
            if inspect.isawaitable(result):
                result = asyncio.run(_awaited(result))
        except (CpuLimit, MemoryError):
            raise
        except BaseException as exc:  # user code: whatever it raised is its request's
            raised = UserRaised.of(exc)
            return {"raised": _raised(raised)}
        return {"ok": result}

    def _step(self, loaded: Loaded, step: Any) -> dict[str, Any]:
        snapshot = step.snapshot.to_json()
        effects = encode_effects(step.effects, loaded.refs)
        try:
            # As the host stores it (JSON.stringify's way): the host checks it and
            # stores this text as it is, instead of encoding the snapshot again.
            text = orjson.dumps(snapshot, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # integers beyond 64 bits, too deep: the host encodes it
            body = {"snapshot": snapshot, "effects": effects}
        else:
            body = {"snapshotText": text, "effects": effects}
        if step.snapshot.unhandled is not None:
            body["unhandled"] = step.snapshot.unhandled
        return {"ok": body}

    # -- effects -----------------------------------------------------------------------------------

    async def serve_effects(self, read: int, unpacker: Unpacker, calls: list[Any]) -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=8))
        closed = asyncio.Event()
        tasks: dict[Any, asyncio.Task[None]] = {}

        def forget(call_id: Any) -> Any:
            return lambda task: tasks.pop(call_id, None)

        def readable() -> None:
            data = os.read(read, 1 << 20)
            if not data:
                loop.remove_reader(read)
                closed.set()
                return
            start(unpacker.feed(data))

        def start(calls: list[Any]) -> None:
            for call in calls:
                if call.get("op") == "cancel":
                    running = tasks.get(call.get("call"))
                    if running is not None:
                        running.cancel()
                    continue
                task = loop.create_task(self.effect(call))
                tasks[call["id"]] = task
                task.add_done_callback(forget(call["id"]))

        start(calls)
        loop.add_reader(read, readable)
        await closed.wait()

    async def effect(self, call: dict[str, Any]) -> None:
        _call_logs.set(Logs())
        op = call.get("op")
        body: dict[str, Any]
        if op == "load":
            body = self.load(call)
        elif op == "load_migration":
            body = self.load_migration(call)
        else:
            effect = call.get("effect")
            current_effect_id.set(
                None if effect is None else EffectId(effect, call.get("attempt", 1))
            )
            secrets = call.get("secrets") or {}
            current_secrets.set(lambda: secrets)
            try:
                body = await self.effect_call(call)
            except asyncio.CancelledError:
                body = {"error": {"code": "cancelled", "message": "cancelled"}}
            except MemoryError:
                body = {"error": OUT_OF_MEMORY}
            except Exception as exc:
                body = {"error": {"code": "worker-error", "message": _describe(exc)}}
        if _exhausted(body):
            self.reply(call["id"], {"error": OUT_OF_MEMORY})
            self.flush()
            os._exit(70)
        self.reply(call["id"], body)
        self.flush()

    async def effect_call(self, call: dict[str, Any]) -> dict[str, Any]:
        loaded = self.versions[call["version"]]
        # A retried service started again after a restart is known by its name only.
        fn = loaded.refs.functions.get(call["ref"] or f"s:{call.get('src')}")
        if call["op"] == "action":
            if fn is None:
                _collect(_unrunnable(call["name"]))
                return {"ok": None}
            effect = RunAction(
                call["name"], call["params"], call["context"], call["event"], fn, takes_params(fn)
            )
            # In a thread, as services are: an action may block.
            await asyncio.to_thread(
                run_now,
                self.code.run_action(loaded.version, call["instance"], effect, call["effect"]),
            )
            return {"ok": None}
        if call["op"] == "service":
            if fn is None:
                return {"raised": {"name": "unsupported-actor", "message": "no such service"}}
            current_progress.set(self._progress_sink(call["id"]))
            actor = StartActor(call["child"], call["src"], call["input"], None, "invoke", fn)
            try:
                result = await self.code.run_service(
                    loaded.version, call["instance"], actor, call["effect"], call["timeout"]
                )
            except UserRaised as exc:
                return {"raised": _raised(exc)}
            except BackstateError as exc:
                return {"error": _error(exc)}
            return {"ok": result}
        raise ValueError(f"unknown op {call['op']!r}")


def _unrunnable(name: str) -> LogRow:
    return LogRow(
        0,
        "",
        "",
        "",
        "error",
        f"action {name!r} cannot run in a sandboxed worker: it was made while the machine "
        "ran (give it a name in setup(actions=...))",
    )


def _check(call: dict[str, Any]) -> WriteCheck | None:
    check = call.get("check")
    if check is None:
        return None
    return WriteCheck(check["auth"], check["type"])


def _error(exc: BackstateError) -> dict[str, Any]:
    return {"code": exc.code, "message": exc.message, "status": exc.status}


def _raised(exc: UserRaised) -> dict[str, Any]:
    status = exc.status_code
    valid = isinstance(status, int) and not isinstance(status, bool)
    return {"name": exc.name, "message": exc.message, "status": status if valid else None}


def _describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(exc)).strip()


def _timed_out(seconds: float) -> dict[str, Any]:
    message = f"machine code ran past its {seconds:g} s limit"
    return {"error": {"code": "user-code-timeout", "message": message}}


def _with_logs(body: dict[str, Any]) -> dict[str, Any]:
    """A batch's answer to one of its calls: ``body`` and what that call logged."""
    logs = _call_logs.get(None)
    return {"logs": logs.taken() if logs is not None else [], **body}


def _exhausted(body: dict[str, Any]) -> bool:
    """Whether the call ran out of memory (user code's MemoryError, maybe wrapped): the
    worker's heap may be unusable, so a fresh worker takes over."""
    error = body.get("error") or {}
    return error.get("code") == "user-code-memory" or "MemoryError" in str(error.get("message"))


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _relay_egress() -> Callable[[], None]:
    """``127.0.0.1:3128`` in the jail's own network, each connection relayed to the
    org's egress proxy (which decides what may pass: see _egress): bound now (a hardened
    worker may not listen), its thread started by the function returned, once the
    worker is hardened (a thread started before would escape Landlock's rules, which
    hold the threads started after, and user code can make a thread run its code)."""
    listener = socket.create_server(EGRESS_PROXY)

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        while True:
            client, _ = listener.accept()
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(EGRESS_SOCKET)
            except OSError:
                client.close()
                upstream.close()
                continue
            for ends in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=ends, daemon=True).start()

    return threading.Thread(target=accept, name="egress relay", daemon=True).start


def main() -> None:
    read, write = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # what user code prints (past the capture) is the server's to log
    unpacker = Unpacker(limit=1 << 30)
    frames: list[Any] = []
    while not frames:
        data = os.read(read, 1 << 20)
        if not data:
            return
        frames = unpacker.feed(data)
    config, calls = frames[0], frames[1:]
    relay = None
    if config["role"] == EFFECTS and os.path.exists(EGRESS_SOCKET):
        relay = _relay_egress()
    harden(config["role"], config["limits"])
    if relay is not None:
        relay()
    worker = Worker(write, config)
    os.write(write, pack({"id": "ready"}))
    if config["role"] == TRANSITIONS:
        worker.serve_transitions(read, unpacker, calls)
    elif config["role"] == EFFECTS:
        asyncio.run(worker.serve_effects(read, unpacker, calls))
    sys.exit(0)


if __name__ == "__main__":
    main()
