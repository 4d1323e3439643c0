"""The server's side of the workers: starting them in their jails, sending them calls,
reading their answers, and replacing those that die, hang or misbehave.

``Worker`` is one process. Calls made while the event loop runs on are written
together (one write for a round's calls), and its answers come back as they are ready.
A worker of transition code answers in order, so the call at the head of its queue is
the one it is running: that one gets a deadline (its CPU limit plus a margin), and a
worker past it is killed; the head is then the culprit (``user-code-timeout``, or
``user-code-crashed`` when the worker died), and the calls behind it were lost with
the worker through no fault of theirs (they may be retried on a fresh one).

``OrgWorkers`` are an org's workers: its transition workers (``workers_per_org``) and
one effects worker, each started on first use, each loading the versions and
migrations its calls need before running them. No worker ever serves two orgs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backstate.runtime import BackstateError
from backstate.runtime._progress import current_progress

from ._frames import FrameError, Unpacker, pack
from ._jail import EFFECTS, JAIL_ENV, TRANSITIONS, Limits, command

logger = logging.getLogger("backstate.sandbox")

START_TIMEOUT = 20.0  # seconds a worker may take to start and harden itself
DEADLINE_MARGIN = 1.0  # seconds past a call's CPU limit before its worker is killed
STDERR_LINES = 50  # a worker's own output logged per minute, at most
# Times a call lost with a dead worker is sent to a fresh one. A lost call never ran
# (the worker died of the call ahead of it), so it is always safe to send again; it is
# lost once for each call ahead of it that kills its worker (a round of an org's events
# where several loop forever), so the bound is high.
RETRIES = 32
BATCH_CALL_SECONDS = 0.1  # of a batch's deadline, for each call past its first
# Answers after which a transition worker exits (its code was cut off midway).
LAST = frozenset({"user-code-timeout", "user-code-memory"})


class WorkerDied(Exception):
    """The worker running a call is gone: ``kind`` is ``timeout`` or ``crashed`` for
    the call it was running, ``lost`` for one waiting behind it."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class Worker:
    def __init__(
        self, org: str, role: str, scratch: Path, limits: Limits, egress: Path | None = None
    ) -> None:
        self.org = org
        self.role = role
        self.scratch = scratch
        self.limits = limits
        self.egress = egress
        self.loaded: set[str] = set()
        self.calls: dict[int, tuple[asyncio.Future[dict[str, Any]], float]] = {}
        # Where a running service's progress frames go (runtime/_progress), by call.
        self.progress: dict[int, Callable[[Any], None]] = {}
        self.alive = False
        self._ids = itertools.count(1)
        self._out: list[bytes] = []
        self._flushing = False
        self._proc: asyncio.subprocess.Process | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._head_since = 0.0
        self._overdue: int | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stderr: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._cause = "the worker exited"
        self._retiring = False  # it answered its last call and exits: take no more

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        self.scratch.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._proc = await asyncio.create_subprocess_exec(
            *command(self.scratch, self.limits, self.egress),
            env=JAIL_ENV,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self.alive = True
        self._reader = loop.create_task(self._read(), name=f"worker {self.org} {self.role}")
        self._stderr = loop.create_task(self._drain_stderr(), name=f"worker {self.org} stderr")
        assert self._proc.stdin is not None
        self._proc.stdin.write(pack({"role": self.role, "limits": {**self.limits.to_json()}}))
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), START_TIMEOUT)
        except (TimeoutError, WorkerDied) as exc:
            self.kill("it did not start")
            raise WorkerDied("crashed", f"a worker for {self.org} did not start: {exc}") from None

    def submit(
        self, message: dict[str, Any], seconds: float | None
    ) -> asyncio.Future[dict[str, Any]]:
        """Send ``message`` (its answer is the future's); ``seconds``: how long it may
        run once at the head of the queue (transition workers)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        if not self.alive:
            future.set_exception(WorkerDied("lost", "the worker is gone"))
            return future
        call_id = next(self._ids)
        message["id"] = call_id
        self.calls[call_id] = (future, seconds or 0.0)
        sink = current_progress.get() if message.get("op") == "service" else None
        if sink is not None:  # set around the service by the runtime's effect runner
            self.progress[call_id] = sink
        self._out.append(pack(message))
        if not self._flushing:
            self._flushing = True
            loop.call_soon(self._flush)
        if self.role == TRANSITIONS and len(self.calls) == 1:
            self._head(loop)
        return future

    def cancel(self, future: asyncio.Future[dict[str, Any]]) -> None:
        """Ask an effects worker to cancel the call behind ``future``."""
        for call_id, (pending, _) in self.calls.items():
            if pending is future:
                self._out.append(pack({"op": "cancel", "call": call_id}))
                self._flush()
                return

    def _flush(self) -> None:
        self._flushing = False
        if self._out and self.alive and self._proc is not None and self._proc.stdin is not None:
            data, self._out = b"".join(self._out), []
            self._proc.stdin.write(data)

    def _head(self, loop: asyncio.AbstractEventLoop) -> None:
        """The call at the head of the queue starts running now; one timer per worker
        (not per call) checks that it ends in time: the one set for an earlier head is
        kept if it comes no later than this head's deadline (it looks again then), else
        set anew (a fresh worker's load may take 10 s, the transition after it 1 s)."""
        self._head_since = now = loop.time()
        deadline = now + self._allowed()
        if self._watchdog is not None:
            if self._watchdog.when() <= deadline:
                return
            self._watchdog.cancel()
        self._watchdog = loop.call_at(deadline, self._check)

    def _allowed(self) -> float:
        return self.calls[next(iter(self.calls))][1] + DEADLINE_MARGIN

    def _check(self) -> None:
        self._watchdog = None
        if not self.calls or not self.alive:
            return
        loop = asyncio.get_running_loop()
        late = self._head_since + self._allowed() - loop.time()
        if late > 0:
            self._watchdog = loop.call_later(late, self._check)
            return
        head = next(iter(self.calls))
        self._overdue = head
        self.kill(f"a call ran past its {self.calls[head][1]:g} s limit")

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        unpacker = Unpacker()
        try:
            while True:
                data = await self._proc.stdout.read(1 << 20)
                if not data:
                    break
                for frame in unpacker.feed(data):
                    self._answer(frame)
        except FrameError as exc:
            logger.error("a worker for %s sent garbage (%s); replacing it", self.org, exc)
            self.kill(f"it sent garbage: {exc}")
        except (ConnectionError, OSError):
            pass
        await self._proc.wait()
        self._died()

    def _answer(self, frame: Any) -> None:
        if not isinstance(frame, dict):
            raise FrameError("an answer must be an object")
        if "progress" in frame:
            self._progress(frame)
            return
        call_id = frame.get("id")
        if call_id == "ready" and self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
            return
        if not isinstance(call_id, int):
            raise FrameError(f"an answer to no call ({call_id!r})")
        pending = self.calls.pop(call_id, None)
        if pending is None:
            raise FrameError(f"an answer to no call ({call_id!r})")
        self.progress.pop(call_id, None)
        if not pending[0].done():
            pending[0].set_result(frame)
        error = frame.get("error")
        if self.role == TRANSITIONS and isinstance(error, dict) and error.get("code") in LAST:
            # The worker exits after this answer: the calls queued behind it are lost
            # through no fault of theirs (retried on a fresh worker), and none join them.
            self._retiring, self.alive = True, False
        if self.role == TRANSITIONS and self.calls:
            self._head(asyncio.get_running_loop())

    def _progress(self, frame: dict[str, Any]) -> None:
        """A running service's partial result: checked like any output, then passed on
        (one that is not what it may be is dropped; the service goes on)."""
        sink = self.progress.get(frame["progress"])  # a call that has ended: nobody hears
        if sink is None:
            return
        try:
            sink(frame.get("data"))
        except (BackstateError, ValueError) as exc:
            logger.warning("%s: a service's progress was refused: %s", self.org, exc)

    def _died(self) -> None:
        self.progress.clear()
        if not self.alive and not self.calls:
            return
        self.alive = False
        if self._watchdog is not None:
            self._watchdog.cancel()
        code = self._proc.returncode if self._proc is not None else None
        detail = f"{self._cause} (exit status {code})"
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(WorkerDied("crashed", detail))
        calls, self.calls = self.calls, {}
        for index, (call_id, (future, _)) in enumerate(calls.items()):
            if future.done():
                continue
            if self.role == EFFECTS:
                kind = "crashed"
            elif call_id == self._overdue:
                kind = "timeout"
            else:
                kind = "crashed" if index == 0 and not self._retiring else "lost"
            future.set_exception(WorkerDied(kind, detail))
        if calls:
            logger.warning(
                "a worker for %s died: %s; %d calls in flight", self.org, detail, len(calls)
            )

    async def _drain_stderr(self) -> None:
        """What the worker wrote past its capture (to its own stdout or stderr): logged,
        at most ``STDERR_LINES`` a minute, each line cut short; the rest is read and
        dropped, so a worker that prints without end only costs itself."""
        assert self._proc is not None and self._proc.stderr is not None
        window, count, dropped = time.monotonic(), 0, 0
        while True:
            try:
                line = await self._proc.stderr.readline()
            except ValueError:  # a line longer than the stream's limit
                line = await self._proc.stderr.read(1 << 16)
            if not line:
                return
            now = time.monotonic()
            if now - window > 60:
                if dropped:
                    logger.warning("worker %s: %d more lines dropped", self.org, dropped)
                window, count, dropped = now, 0, 0
            if count < STDERR_LINES:
                count += 1
                logger.info("worker %s: %s", self.org, line[:500].decode(errors="replace").rstrip())
            else:
                dropped += 1

    def kill(self, cause: str) -> None:
        self._cause = cause
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    async def close(self) -> None:
        self.kill("the server closed it")
        for task in (self._reader, self._stderr):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 5)


Load = Callable[[str], dict[str, Any]]  # a version's or migration's id -> its load call


class OrgWorkers:
    """One org's workers. ``load`` gives the call that loads a version or migration."""

    def __init__(
        self, org: str, scratch: Path, limits: Limits, load: Load, egress: Path | None = None
    ) -> None:
        self.org = org
        self.scratch = scratch
        self.limits = limits
        self.load = load
        self.egress = egress
        self.workers: dict[str, list[Worker]] = {TRANSITIONS: [], EFFECTS: []}
        self._starting: dict[str, asyncio.Task[Worker]] = {}

    async def call(
        self,
        role: str,
        message: dict[str, Any],
        needs: list[str],
        retriable: bool,
        weight: int = 1,
    ) -> dict[str, Any]:
        """``message``'s answer from a worker of ``role`` that has loaded ``needs``;
        ``weight``: how many transition calls it carries (a batch may run one call's
        CPU limit, and ``BATCH_CALL_SECONDS`` for each call more, before its worker is
        killed: transitions take microseconds to milliseconds, so a batch past that
        holds code that turned off its worker's own timers, or many slow calls; its
        calls are then made one by one, each with its own limit)."""
        for attempt in itertools.count():
            worker = await self._worker(role)
            for needed in needs:
                if needed not in worker.loaded:
                    worker.loaded.add(needed)
                    loading = worker.submit(self.load(needed), self.limits.load_seconds)
                    # Its failure is the next call's (it runs after): nobody awaits it.
                    loading.add_done_callback(_retrieved)
            seconds = None
            if role == TRANSITIONS:
                seconds = self.limits.cpu_seconds + BATCH_CALL_SECONDS * (weight - 1)
            future = worker.submit(dict(message), seconds)
            try:
                return await future
            except WorkerDied as died:
                if died.kind != "lost" or not retriable or attempt >= RETRIES:
                    raise
            except asyncio.CancelledError:
                if role == EFFECTS and worker.alive:
                    worker.cancel(future)
                raise
        raise AssertionError("unreachable")

    async def _worker(self, role: str) -> Worker:
        alive = [w for w in self.workers[role] if w.alive]
        self.workers[role] = alive
        wanted = self.limits.workers_per_org if role == TRANSITIONS else 1
        if len(alive) >= wanted:
            return min(alive, key=lambda w: len(w.calls))
        if role not in self._starting:
            self._starting[role] = asyncio.get_running_loop().create_task(self._start(role))
        try:
            return await asyncio.shield(self._starting[role])
        finally:
            if self._starting.get(role) is not None and self._starting[role].done():
                del self._starting[role]

    async def _start(self, role: str) -> Worker:
        egress = self.egress if role == EFFECTS else None
        worker = Worker(self.org, role, self.scratch, self.limits, egress)
        await worker.start()
        self.workers[role].append(worker)
        return worker

    async def close(self) -> None:
        for workers in self.workers.values():
            for worker in workers:
                await worker.close()


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
