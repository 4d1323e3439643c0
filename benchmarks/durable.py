"""Durable throughput of ``backstate.runtime.Backstate`` on SQLite, against the fsync
bound and against DBOS Transact on the same file system.

One run measures:

* (a) raw SQLite: one ``INSERT`` + ``COMMIT`` per row, ``journal_mode=WAL``,
  ``synchronous=FULL`` (the one-fsync-per-commit bound);
* (b) backstate: committed transitions/s across N instances (1,000) of a small
  toggle machine (``toggle_machine.py``, an ``assign`` on every event), one asyncio
  sender task per instance sending in a loop; verified afterwards from each instance's
  ``seq`` and ``history``. In pairs (``--pairs``, 3): trusted (the machine in this
  process) then sandboxed (the same file deployed with ``Sandbox.deploy``, run by
  bubblewrap-jailed workers, one org, one worker: what ``backstate serve`` runs by
  default), and the sandboxed rate as a share of the trusted one, the median over the
  pairs (this VM's speed drifts by a third between runs seconds apart). Each run sets
  the collector as ``backstate serve`` does once it has started (``server/_gc.py``:
  the heap frozen once the instances exist, full collections rare). Then a scaling table, sandboxed with 1, 2 and 4 workers per
  org, for one org and for four (the instances spread over them);
* (c) DBOS Transact on SQLite (WAL, ``synchronous=FULL``): checkpointed workflow
  steps/s, in a few configurations (each in its own subprocess); the best is used;
* the latency of one ``send`` (commit and settle) on an idle store, and the lateness
  of durable ``after`` timers on the system clock.

Usage::

    .venv/bin/python benchmarks/durable.py                  # full run (~3 minutes)
    .venv/bin/python benchmarks/durable.py --quick          # smoke run (~30 s)
    .venv/bin/python benchmarks/durable.py --skip-dbos      # without (c)
    .venv/bin/python benchmarks/durable.py --profile        # (b), both modes, under cProfile

Database files live in a temporary directory (``--dir`` picks its parent, default the
system temp dir) that is removed afterwards. Exits 1 if a verification fails, a run of
(b) fails (a sandbox that cannot start included) or a peer (DBOS, or any one of its
configurations) fails, naming it; not when a bar is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import os
import platform
import pstats
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TOGGLE = HERE / "toggle_machine.py"  # (b)'s machine, as a machine file
BAR_SANDBOXED = 0.8  # sandboxed (b) / trusted (b)
BAR_VS_RAW = 4.0
BAR_VS_DBOS = 20.0
# (a) runs before (b), after (b) and after (c): a shared disk's fsync time drifts (other
# processes' fsyncs force journal commits), and the best run is the bound for b/a.
RAW_RUNS = {"raw_before": "before (b)", "raw_after": "after (b)", "raw_after_dbos": "after (c)"}


@dataclass
class Settings:
    instances: int
    seconds: float
    warmup: float
    raw_seconds: float
    latency_sends: int
    timers: int
    timer_min_ms: int
    timer_max_ms: int
    per_instance: int
    pairs: int = 3
    dbos_configs: list[str] = field(default_factory=list)


@dataclass
class Results:
    rows: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _sqlite_writers(children: Iterable[int] | None = None) -> list[int]:
    """This process's SQLite writer processes (store/_sqlite_writer): its commits.
    ``children``: this process's children if known, else read from /proc."""
    if children is None:
        children = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"{entry.path}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == os.getpid():
                children.append(int(entry.name))
    writers = []
    for pid in children:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"_sqlite_plan.py" in f.read():
                    writers.append(pid)
        except OSError:
            continue
    return writers


def _written_bytes() -> int | None:
    """Bytes this process and its SQLite writers have caused to be written to storage
    (Linux /proc/<pid>/io)."""
    total = None
    for pid in ["self", *_sqlite_writers()]:
        try:
            with open(f"/proc/{pid}/io") as f:
                for line in f:
                    if line.startswith("write_bytes:"):
                        total = (total or 0) + int(line.split()[1])
        except OSError:
            pass
    return total


def _fs_of(path: str) -> str:
    """The file system type and mount point holding ``path`` (from /proc/mounts)."""
    best = ("", "?")
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mount, fstype = parts[1], parts[2]
                if path.startswith(mount) and len(mount) > len(best[0]):
                    best = (mount, fstype)
    except OSError:
        pass
    return f"{best[1]} at {best[0] or '?'}"


# --------------------------------------------------------------------------- (a) raw SQLite


def bench_raw(directory: str, seconds: float) -> dict[str, Any]:
    path = os.path.join(directory, "raw.db")
    db = sqlite3.connect(path, isolation_level=None)
    try:
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        db.execute("PRAGMA synchronous = FULL")
        sync = db.execute("PRAGMA synchronous").fetchone()[0]
        assert mode == "wal" and sync == 2, (mode, sync)
        db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
        payload = json.dumps({"value": "on", "context": {"count": 0}})
        insert = "INSERT INTO rows (payload) VALUES (?)"
        n = 0
        samples: list[float] = []
        clock = time.perf_counter
        start = clock()
        end = start + seconds
        while True:
            t0 = clock()
            db.execute("BEGIN")
            db.execute(insert, (payload,))
            db.execute("COMMIT")
            t1 = clock()
            samples.append(t1 - t0)
            n += 1
            if t1 >= end:
                break
        elapsed = clock() - start
        stored = db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
    finally:
        db.close()
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            os.remove(path + suffix)
    return {
        "commits": n,
        "seconds": elapsed,
        "rate": n / elapsed,
        "commit_p50_ms": 1000 * _pct(samples, 50),
        "commit_p99_ms": 1000 * _pct(samples, 99),
        "verified": stored == n,
    }


# --------------------------------------------------------------------------- (b) backstate


def _toggle_machine() -> Any:
    from backstate.machine import load_file

    return load_file(TOGGLE).machine


@dataclass(frozen=True)
class Mode:
    """Where (b)'s machine code runs: in this process (trusted), or in sandboxed workers,
    ``workers`` transition workers for each of ``orgs`` orgs (the instances spread
    evenly over the orgs, one machine ``org<k>.toggle`` each)."""

    sandboxed: bool
    orgs: int = 1
    workers: int = 1

    @property
    def key(self) -> str:
        return f"sandboxed-{self.orgs}x{self.workers}" if self.sandboxed else "trusted"

    @property
    def kind(self) -> str:
        return "sandboxed" if self.sandboxed else "trusted"

    @property
    def label(self) -> str:
        if not self.sandboxed:
            return "trusted (in-process)"
        return f"sandboxed, {_count(self.orgs, 'org')} x {_count(self.workers, 'worker')}"

    @property
    def machines(self) -> list[str]:
        return [f"org{k}.toggle" for k in range(self.orgs)]


TRUSTED = Mode(sandboxed=False)
SANDBOXED = Mode(sandboxed=True)  # what `backstate serve` runs by default: 1 worker per org
# The scaling table: orgs x workers per org; (1, 1) is SANDBOXED itself.
SCALING_ORGS = (1, 4)
SCALING_WORKERS = (1, 2, 4)


@contextlib.asynccontextmanager
async def _serving_gc() -> AsyncIterator[Callable[[], None]]:
    """The collector as ``backstate serve`` sets it once it has started (its heap
    frozen, full collections rare: ``server/_gc.py``), for one (b) run: the caller
    calls what this yields once its instances exist (a server's recovered ones), and
    the collector is as it was after the run."""
    from backstate.server._gc import tune_gc

    thresholds = gc.get_threshold()
    try:
        yield tune_gc
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _cpu_seconds() -> tuple[float, float, float]:
    """CPU seconds used so far by this process's main thread (the event loop), by its
    other threads (reads) and its SQLite writer (the commits), and by its other live
    descendants (the sandboxed workers and their bubblewrap parents), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")

    def used(stat: str) -> tuple[int, float]:
        fields = stat[stat.rindex(")") + 2 :].split()  # a name may hold spaces
        return int(fields[1]), (int(fields[11]) + int(fields[12])) / tick  # ppid, utime + stime

    loop = threads = 0.0
    main = str(threading.main_thread().native_id)
    for task in os.scandir("/proc/self/task"):
        try:
            with open(f"{task.path}/stat") as f:
                seconds = used(f.read())[1]
        except OSError:  # ended meanwhile
            continue
        if task.name == main:
            loop += seconds
        else:
            threads += seconds
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"{entry.path}/stat") as f:
                    parents[int(entry.name)], cpu[int(entry.name)] = used(f.read())
            except OSError:
                continue
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    writers = _sqlite_writers(children.get(os.getpid(), []))
    threads += sum(cpu.get(pid, 0.0) for pid in writers)
    workers = 0.0
    todo = [pid for pid in children.get(os.getpid(), []) if pid not in writers]
    while todo:
        pid = todo.pop()
        workers += cpu[pid]
        todo.extend(children.get(pid, []))
    return loop, threads, workers


def _workers_running(sandbox: Any) -> int:
    """Live transition workers over all orgs (reads the sandbox's own bookkeeping)."""
    from backstate.sandbox._jail import TRANSITIONS

    return sum(sum(1 for w in org.workers[TRANSITIONS] if w.alive) for org in sandbox.orgs.values())


async def bench_backstate(
    directory: str, s: Settings, mode: Mode, profile: bool = False
) -> dict[str, Any]:
    """(b) in one mode; a failure to deploy or run is the result's ``error``."""
    try:
        return await _bench_backstate(directory, s, mode, profile)
    except Exception as exc:
        return {"mode": mode.label, "error": f"{type(exc).__name__}: {exc}"}


async def _bench_backstate(
    directory: str, s: Settings, mode: Mode, profile: bool
) -> dict[str, Any]:
    from backstate.runtime import Backstate

    path = os.path.join(directory, f"backstate-{mode.key}.db")
    n = s.instances
    machines = mode.machines
    keys = [(machines[i % len(machines)], f"i{i}") for i in range(n)]
    counts = [0] * n
    out: dict[str, Any] = {
        "mode": mode.label,
        "instances": n,
        "senders": n * s.per_instance,
        "orgs": mode.orgs,
        "workers_per_org": mode.workers if mode.sandboxed else None,
    }
    sandbox = None
    if mode.sandboxed:
        from backstate.sandbox import Limits, Sandbox

        sandbox = Sandbox(
            Path(directory) / f"sandbox-{mode.key}", Limits(workers_per_org=mode.workers)
        )
    bs = Backstate(path, synchronous="FULL", code=sandbox)
    try:
        for machine in machines:
            if sandbox is not None:
                await sandbox.deploy(bs, machine, TOGGLE.read_text(), filename=TOGGLE.name)
            else:
                bs.deploy(machine, _toggle_machine())
    except BaseException:
        await bs.close()
        if sandbox is not None:
            await sandbox.close()
        raise
    async with bs, _serving_gc() as serving_gc:
        start = time.perf_counter()
        for chunk in range(0, n, 500):
            await asyncio.gather(*(bs.create(m, name) for m, name in keys[chunk : chunk + 500]))
        out["create_rate"] = n / (time.perf_counter() - start)
        serving_gc()

        stop = False
        event = {"type": "toggle"}

        async def sender(i: int) -> None:
            machine, name = keys[i]
            while not stop:
                await bs.send(machine, name, event)
                counts[i] += 1

        tasks = [asyncio.create_task(sender(i % n)) for i in range(n * s.per_instance)]
        problems: list[str] = []
        if sandbox is not None:
            # An org's workers start on demand, one at a time: all of them must be
            # running before the window, else its first part measures fewer.
            wanted = mode.orgs * mode.workers
            deadline = time.monotonic() + 30
            while _workers_running(sandbox) < wanted and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        await asyncio.sleep(s.warmup)

        main_prof = cProfile.Profile() if profile else None
        stats = bs.processor.stats
        batches0, commit_seconds0 = stats.commits, stats.commit_seconds
        done0 = sum(counts)
        written0 = _written_bytes()
        cpu0 = _cpu_seconds()
        if main_prof is not None:
            main_prof.enable()
        start = time.perf_counter()
        await asyncio.sleep(s.seconds)
        done1 = sum(counts)
        elapsed = time.perf_counter() - start
        if main_prof is not None:
            main_prof.disable()
        cpu1 = _cpu_seconds()
        batches = stats.commits - batches0
        commit_seconds = stats.commit_seconds - commit_seconds0
        written1 = _written_bytes()
        if sandbox is not None:
            out["workers_running"] = _workers_running(sandbox)
            if out["workers_running"] != mode.orgs * mode.workers:
                problems.append(
                    f"{out['workers_running']} transition workers ran,"
                    f" not {mode.orgs * mode.workers}"
                )
        stop = True
        await asyncio.gather(*tasks)

        transitions = done1 - done0
        out.update(
            transitions=transitions,
            seconds=elapsed,
            rate=transitions / elapsed,
            batches=batches,
            per_batch=transitions / batches if batches else float("nan"),
            commit_share=commit_seconds / elapsed,
            commit_ms=1000 * commit_seconds / batches if batches else float("nan"),
            written_per_transition=(written1 - written0) / transitions
            if written0 is not None and written1 is not None and transitions
            else float("nan"),
            cores=[(b - a) / elapsed for a, b in zip(cpu0, cpu1, strict=True)],
        )

        # Verify: every acknowledged send is a committed transition, no more, no fewer.
        for i, (machine, name) in enumerate(keys):
            state = await bs.get(machine, name)
            if state.seq != counts[i] or state.context["count"] != counts[i]:
                problems.append(
                    f"{machine}/{name}: seq {state.seq}, count {state.context}, sent {counts[i]}"
                )
        history = await bs.history(*keys[0], limit=counts[0] + 10)
        if [h.seq for h in history] != list(range(counts[0] + 1)):
            problems.append(f"{keys[0][0]}/{keys[0][1]}: history seqs are not 0..{counts[0]}")
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = reader.execute(
            "SELECT COUNT(*), SUM(seq) FROM (SELECT MAX(seq) AS seq FROM history"
            " GROUP BY machine, instance)"
        ).fetchone()
        total_rows = reader.execute("SELECT COUNT(*) FROM history").fetchone()[0]
    finally:
        reader.close()
    if rows[0] != n or rows[1] != sum(counts) or total_rows != sum(counts) + n:
        problems.append(
            f"history has {total_rows} rows over {rows[0]} instances (max seqs sum to"
            f" {rows[1]}); expected {sum(counts) + n} rows, {sum(counts)} transitions"
        )
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            os.remove(path + suffix)
    out["verified"] = not problems
    out["problems"] = problems[:5]
    out["total_transitions"] = sum(counts)

    if main_prof is not None:
        out["profile"] = _profile_report(main_prof, elapsed)
    return out


def _profile_report(main: cProfile.Profile, wall: float) -> str:
    """The event loop's hot spots (the commits themselves run in SQLite's writer
    process, out of any profiler's sight here; their time is ``commit_share``)."""
    lines = []
    for title, prof in (("event-loop thread", main),):
        stats = pstats.Stats(prof)
        entries = stats.stats  # type: ignore[attr-defined]
        total = sum(v[2] for v in entries.values())
        lines.append(
            f"\n{title}: {total:.2f} s of function time in a {wall:.2f} s window"
            " (% = share of the window's wall time)"
        )
        lines.append(f"  {'self %':>7} {'cum %':>7} {'calls':>9}  function")
        top = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:18]
        for (file, line, func), (_cc, nc, tt, ct, _callers) in top:
            where = _short(file, line, func)
            lines.append(f"  {100 * tt / wall:7.1f} {100 * ct / wall:7.1f} {nc:9d}  {where}")
        ours = [kv for kv in entries.items() if "backstate" in kv[0][0]]
        ours.sort(key=lambda kv: kv[1][3], reverse=True)
        lines.append(f"  backstate functions by cumulative time ({title}):")
        for (file, line, func), (_cc, nc, tt, ct, _callers) in ours[:14]:
            where = _short(file, line, func)
            lines.append(f"  {100 * tt / wall:7.1f} {100 * ct / wall:7.1f} {nc:9d}  {where}")
    return "\n".join(lines)


def _short(file: str, line: int, func: str) -> str:
    if file == "~":
        return func
    parts = Path(file).parts
    name = "/".join(parts[parts.index("backstate") :]) if "backstate" in parts else parts[-1]
    return f"{name}:{line}({func})"


# --------------------------------------------------------------------------- latency, timers


async def bench_latency_and_timers(directory: str, s: Settings) -> dict[str, Any]:
    from backstate.chart import setup
    from backstate.runtime import Backstate

    fired: dict[int, float] = {}

    def record(context: dict[str, Any], event: dict[str, Any]) -> None:
        fired[context["id"]] = time.time_ns() / 1e6

    timer_machine = setup(
        actions={"record": record}, delays={"d": lambda c, e: c["delay"]}
    ).create_machine(
        {
            "id": "timer",
            "initial": "waiting",
            "context": {"id": 0, "delay": 0},
            "states": {
                "waiting": {"after": {"d": "fired"}},
                "fired": {"entry": ["record"]},
            },
        }
    )
    out: dict[str, Any] = {}
    async with Backstate(os.path.join(directory, "idle.db"), synchronous="FULL") as bs:
        bs.deploy("toggle", _toggle_machine())
        bs.deploy("timer", timer_machine)
        await bs.create("toggle", "solo")
        event = {"type": "toggle"}
        for _ in range(max(5, s.latency_sends // 20)):  # warm-up
            await bs.send("toggle", "solo", event)
        samples = []
        for _ in range(s.latency_sends):
            t0 = time.perf_counter()
            await bs.send("toggle", "solo", event)
            samples.append(1000 * (time.perf_counter() - t0))
        out["latency_p50"] = _pct(samples, 50)
        out["latency_p99"] = _pct(samples, 99)
        out["latency_n"] = len(samples)

        # Timers: delays spread evenly over [min, max] ms, all scheduled at once.
        n = s.timers
        span = s.timer_max_ms - s.timer_min_ms
        delays = [s.timer_min_ms + (span * i) // max(1, n - 1) for i in range(n)]
        await asyncio.gather(
            *(
                bs.create("timer", f"t{i}", context={"id": i, "delay": d})
                for i, d in enumerate(delays)
            )
        )
        deadline = time.monotonic() + s.timer_max_ms / 1000 + 10
        while len(fired) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        by_action, by_ts = [], []
        for i, d in enumerate(delays):
            rows = await bs.history("timer", f"t{i}")
            if len(rows) < 2 or i not in fired:
                continue
            due = rows[0].ts + d  # the runtime schedules at (processing time + delay)
            by_action.append(fired[i] - due)
            by_ts.append(rows[1].ts - due)
        out.update(
            timers=n,
            timers_fired=len(by_action),
            timer_p50=_pct(by_action, 50),
            timer_p99=_pct(by_action, 99),
            timer_ts_p50=_pct(by_ts, 50),
            timer_ts_p99=_pct(by_ts, 99),
            timer_early=sum(1 for x in by_ts if x < 0),
        )
    return out


# --------------------------------------------------------------------------- (c) DBOS


DBOS_CONFIGS = ("loop-all", "loop-10", "queue-10")
DBOS_DESCRIPTIONS = {
    "loop-all": "async workflow per instance, looping a checkpointed step",
    "loop-10": "10 async workflows, looping a checkpointed step",
    "queue-10": "one-step workflows on a queue (worker_concurrency=10)",
}


def run_dbos(directory: str, s: Settings) -> list[dict[str, Any]]:
    """Each configuration in a fresh subprocess (DBOS is a process-wide singleton)."""
    results = []
    for config in s.dbos_configs:
        sub = os.path.join(directory, f"dbos-{config}")
        os.mkdir(sub)
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--dbos-worker",
            config,
            "--dir",
            sub,
            "--instances",
            str(s.instances),
            "--seconds",
            str(s.seconds),
            "--warmup",
            str(s.warmup),
        ]
        budget = 60 + 4 * s.seconds + s.instances / 50
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget, check=False)
        except subprocess.TimeoutExpired:
            results.append({"config": config, "error": f"timed out after {budget:.0f} s"})
            continue
        last = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
        try:
            result = json.loads(last[0]) if last else None
        except json.JSONDecodeError:
            result = None
        if proc.returncode != 0 or not isinstance(result, dict):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            results.append(
                {"config": config, "error": " | ".join(tail) or f"exit {proc.returncode}"}
            )
            continue
        results.append(result)
    return results


def dbos_worker(config: str, directory: str, instances: int, seconds: float, warmup: float) -> None:
    """Runs in a subprocess: one DBOS configuration, prints one JSON line."""
    import logging

    import sqlalchemy as sa
    from dbos import DBOS, DBOSConfig

    path = os.path.join(directory, "dbos.sqlite")

    # DBOS opens SQLite with the default rollback journal; WAL + synchronous=FULL gives it
    # the same durability as backstate and was ~4x faster here. Every connection of every
    # engine in this process gets it (this process runs nothing else).
    @sa.event.listens_for(sa.Engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        if isinstance(dbapi_conn, sqlite3.Connection):
            dbapi_conn.execute("PRAGMA journal_mode = WAL")
            dbapi_conn.execute("PRAGMA synchronous = FULL")

    dbos_config: DBOSConfig = {
        "name": "durable-bench",
        "system_database_url": f"sqlite:///{path}",
        "log_level": "WARNING",
    }
    completed = [0]
    stop = [False]
    gate: asyncio.Event | None = None  # created in the loop; workflows start stepping together

    @DBOS.step()
    async def bump(n: int) -> int:
        return n + 1

    @DBOS.workflow()
    async def counter(i: int) -> int:
        assert gate is not None
        await gate.wait()  # else running workflows starve the starting of the others
        n = 0
        while not stop[0]:
            n = await bump(n)  # returns once the step's output is checkpointed
            completed[0] += 1
        return n

    @DBOS.workflow()
    async def one_step(i: int) -> int:
        n = await bump(i)
        completed[0] += 1
        return n

    async def main() -> dict[str, Any]:
        nonlocal gate
        gate = asyncio.Event()
        DBOS(config=dbos_config)
        DBOS.launch()
        logging.getLogger("dbos").setLevel(logging.WARNING)
        try:
            out: dict[str, Any] = {"config": config, "description": DBOS_DESCRIPTIONS[config]}
            start = time.perf_counter()
            if config.startswith("loop"):
                workflows = instances if config == "loop-all" else 10
                handles = []
                for i in range(workflows):
                    handles.append(await DBOS.start_workflow_async(counter, i))
                    if not (i + 1) % 100:
                        _progress(f"{config}: started {i + 1} workflows, {completed[0]} steps")
                out["workflows"] = workflows
                out["start_seconds"] = time.perf_counter() - start
                _progress(f"{config}: all started in {out['start_seconds']:.1f} s")
                gate.set()
                await asyncio.sleep(warmup)
                done0, t0 = completed[0], time.perf_counter()
                await asyncio.sleep(seconds)
                done1, t1 = completed[0], time.perf_counter()
                stop[0] = True
                _progress(f"{config}: window done ({done1 - done0} steps), draining")
                total = sum(await asyncio.gather(*(h.get_result() for h in handles)))
                _progress(f"{config}: drained")
            else:
                await DBOS.register_queue_async(
                    "bench", worker_concurrency=10, polling_interval_sec=0.01
                )
                slots = asyncio.Semaphore(40)  # bounded backlog: drains fast at the end
                pending: set[asyncio.Task[int]] = set()

                async def run_one(i: int) -> int:
                    try:
                        handle = await DBOS.enqueue_workflow_async("bench", one_step, i)
                        return await handle.get_result()
                    finally:
                        slots.release()

                async def producer() -> None:
                    i = 0
                    while not stop[0]:
                        await slots.acquire()
                        task = asyncio.create_task(run_one(i))
                        pending.add(task)
                        i += 1

                feeder = asyncio.create_task(producer())
                await asyncio.sleep(warmup)
                done0, t0 = completed[0], time.perf_counter()
                await asyncio.sleep(seconds)
                done1, t1 = completed[0], time.perf_counter()
                stop[0] = True
                slots.release()
                await feeder
                await asyncio.gather(*pending)
                total = completed[0]
                out["workflows"] = len(pending)
            out.update(steps=done1 - done0, seconds=t1 - t0, rate=(done1 - done0) / (t1 - t0))
        finally:
            DBOS.destroy()
        db = sqlite3.connect(path)
        try:
            stored = db.execute(
                "SELECT COUNT(*) FROM operation_outputs WHERE function_name LIKE '%bump%'"
            ).fetchone()[0]
            journal = db.execute("PRAGMA journal_mode").fetchone()[0]
        finally:
            db.close()
        out["checkpointed_steps"] = stored
        out["counted_steps"] = completed[0]
        out["verified"] = stored == completed[0] == (total if config.startswith("loop") else stored)
        out["journal_mode"] = journal
        return out

    result = asyncio.run(main())
    print(json.dumps(result))


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _dbos_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("dbos")
    except Exception:
        return None


# --------------------------------------------------------------------------- report


def _fmt(x: float, digits: int = 0) -> str:
    if x != x:  # nan
        return "n/a"
    return f"{x:,.{digits}f}"


def print_report(res: Results, s: Settings, directory: str) -> None:
    r = res.rows
    print()
    print(f"{'measure':<48} {'result':>14}  notes")
    print("-" * 100)
    a = r.get("raw")
    b = r.get(TRUSTED.key)
    for key, when in RAW_RUNS.items():
        raw = r.get(key)
        if raw:
            mark = " *used*" if raw is a else ""
            print(
                f"{'(a) raw SQLite commits/s (WAL, FULL), ' + when:<48} {_fmt(raw['rate']):>14}"
                f"  INSERT+COMMIT per row; commit p50/p99 {raw['commit_p50_ms']:.2f}/"
                f"{raw['commit_p99_ms']:.2f} ms{mark}"
            )
    for mode in (TRUSTED, SANDBOXED):
        _print_b(r.get(mode.key), mode)
    dbos = r.get("dbos")
    best = None
    if dbos is None:
        print(f"{'(c) DBOS Transact steps/s':<48} {'skipped':>14}")
    else:
        ok = [d for d in dbos if "rate" in d]
        best = max(ok, key=lambda d: d["rate"]) if ok else None
        for d in dbos:
            label = f"(c) DBOS steps/s [{d['config']}]"
            if "rate" in d:
                mark = " *best*" if d is best else ""
                print(
                    f"{label:<48} {_fmt(d['rate']):>14}  {d['description']},"
                    f" journal={d.get('journal_mode')}, verified={d.get('verified')}{mark}"
                )
            else:
                print(f"{label:<48} {'failed':>14}  {d['error'][:200]}")
    lt = r.get("idle")
    if lt:
        print(
            f"{'send-and-settle latency p50 / p99 (ms)':<48}"
            f" {_fmt(lt['latency_p50'], 2) + ' / ' + _fmt(lt['latency_p99'], 2):>14}"
            f"  idle store, {lt['latency_n']:,} sequential sends to one instance"
        )
        print(
            f"{'timer lateness p50 / p99 (ms)':<48}"
            f" {_fmt(lt['timer_p50'], 1) + ' / ' + _fmt(lt['timer_p99'], 1):>14}"
            f"  {lt['timers_fired']}/{lt['timers']} timers ({s.timer_min_ms}-{s.timer_max_ms} ms),"
            " due -> entry action ran (after commit)"
        )
        print(
            f"{'timer lateness by history ts p50 / p99 (ms)':<48}"
            f" {_fmt(lt['timer_ts_p50'], 0) + ' / ' + _fmt(lt['timer_ts_p99'], 0):>14}"
            f"  due -> transition processed; fired early: {lt['timer_early']}"
        )
    print("-" * 100)
    ratios = _pair_ratios(r, s)
    if ratios:
        ratio = statistics.median(ratios)
        verdict = "PASS" if ratio >= BAR_SANDBOXED else "MISS"
        each = ", ".join(f"{x:.2f}" for x in ratios)
        print(
            f"{'sandboxed / trusted (b)':<48} {ratio:>14.2f}  bar >= {BAR_SANDBOXED:g}: {verdict}"
            f" (median of {len(ratios)} pairs run one after the other: {each};"
            f" {os.cpu_count()} CPUs)"
        )
    else:
        print(f"{'sandboxed / trusted (b)':<48} {'n/a':>14}")
    if a and b and "rate" in b:
        ratio = b["rate"] / a["rate"]
        verdict = "PASS" if ratio >= BAR_VS_RAW else "MISS"
        print(
            f"{'b/a (backstate / raw SQLite)':<48} {ratio:>14.2f}  bar >= {BAR_VS_RAW:g}: {verdict}"
        )
    if b and "rate" in b and best is not None:
        ratio = b["rate"] / best["rate"]
        verdict = "PASS" if ratio >= BAR_VS_DBOS else "MISS"
        print(
            f"{'b/c (backstate / best DBOS)':<48} {ratio:>14.1f}  bar >= {BAR_VS_DBOS:g}:"
            f" {verdict} (vs {best['config']})"
        )
    else:
        print(f"{'b/c (backstate / best DBOS)':<48} {'n/a':>14}")
    _print_scaling(r, s)
    for mode in (TRUSTED, SANDBOXED):
        run = r.get(mode.key)
        if run and "profile" in run:
            print(f"\n(b) {mode.label} under cProfile (the workers' own time is not in it):")
            print(run["profile"])


def _pair_ratios(r: dict[str, Any], s: Settings) -> list[float]:
    """Sandboxed / trusted (b) of each pair (the rate of this VM drifts by a third from
    one run to the next, so one pair alone says little)."""
    ratios = []
    for pair in range(s.pairs):
        tag = "" if pair == 0 else f"#{pair + 1}"
        t, sb = r.get(TRUSTED.key + tag), r.get(SANDBOXED.key + tag)
        if t and sb and "rate" in t and "rate" in sb:
            ratios.append(sb["rate"] / t["rate"])
    return ratios


def _print_b(b: dict[str, Any] | None, mode: Mode) -> None:
    if b is None:
        return
    label = f"(b) backstate transitions/s, {mode.kind}"
    if "rate" not in b:
        print(f"{label:<48} {'failed':>14}  {mode.label}: {b['error'][:200]}")
        return
    print(
        f"{label:<48} {_fmt(b['rate']):>14}  {mode.label}: {b['instances']:,} instances,"
        f" {b['senders']:,} senders, {b['seconds']:.1f} s, verified={b['verified']}"
    )
    print(
        f"{'    transitions per commit (group commit)':<48} {_fmt(b['per_batch'], 1):>14}"
        f"  {b['batches']:,} commits, {_fmt(b['commit_ms'], 1)} ms each,"
        f" {100 * b['commit_share']:.0f}% of wall time awaiting commits"
    )
    print(
        f"{'    CPU cores: event loop + threads + workers':<48} {_cores(b):>14}"
        "  this process's main thread, its other threads + SQLite writer (commits), the workers"
    )
    per = "/".join(f"{1e6 * c / b['rate']:.0f}" for c in b["cores"])
    print(
        f"{'    CPU us per transition, same three':<48} {per:>14}"
        "  (steadier than rates when other work shares the cores)"
    )
    print(
        f"{'    bytes written to disk per transition':<48}"
        f" {_fmt(b['written_per_transition']):>14}  /proc/<pid>/io write_bytes, this process and its SQLite writer"
        " (WAL frames + checkpoints) over the window"
    )
    print(f"{'    creates/s':<48} {_fmt(b['create_rate']):>14}")
    for problem in b["problems"]:
        print(f"    verification problem: {problem}")


def _cores(b: dict[str, Any]) -> str:
    return "+".join(f"{c:.2f}" for c in b["cores"])


def _print_scaling(r: dict[str, Any], s: Settings) -> None:
    """The sandboxed runs by orgs and workers per org, the trusted run as reference."""
    modes = [[Mode(True, orgs, workers) for workers in SCALING_WORKERS] for orgs in SCALING_ORGS]
    if not any(m.key in r for row in modes for m in row):
        return
    trusted = r.get(TRUSTED.key) or {}
    base = trusted.get("rate")

    def cells(row: list[Mode], cell: Callable[[dict[str, Any]], str]) -> str:
        out = []
        for mode in row:
            run = r.get(mode.key)
            out.append("-" if run is None else cell(run) if "rate" in run else "failed")
        return "".join(f"{x:>16}" for x in out)

    print()
    heads = "".join(f"{_count(w, 'worker') + '/org':>16}" for w in SCALING_WORKERS)
    print(f"{'sandboxed scaling (transitions/s)':<40}{heads}")
    print(f"{'trusted (reference, in-process)':<40}{_fmt(base) if base else 'failed':>16}")
    for orgs, row in zip(SCALING_ORGS, modes, strict=True):
        each = (
            f"{s.instances:,} instances" if orgs == 1 else f"{s.instances // orgs:,} instances each"
        )
        print(f"{_count(orgs, 'org') + f' ({each})':<40}{cells(row, lambda c: _fmt(c['rate']))}")
        ratio = (lambda c: f"{c['rate'] / base:.2f}") if base else (lambda c: "n/a")
        print(f"{'  / trusted':<40}{cells(row, ratio)}")
        print(f"{'  cores: loop + threads + workers':<40}{cells(row, _cores)}")
        loop_us = lambda c: f"{1e6 * c['cores'][0] / c['rate']:.0f}"  # noqa: E731
        print(f"{'  event-loop CPU us per transition':<40}{cells(row, loop_us)}")
        print(f"{'  transitions per commit':<40}{cells(row, lambda c: _fmt(c['per_batch']))}")
    for row in modes:
        for mode in row:
            run = r.get(mode.key)
            if run is not None and "rate" not in run:
                print(f"  {mode.label}: failed: {run['error'][:300]}")
            elif run is not None and not run["verified"]:
                print(f"  {mode.label}: not verified: {'; '.join(run['problems'])[:300]}")
    print(
        f"({os.cpu_count()} CPUs, shared by this process, every worker and whatever else runs:"
        " more workers can only help while the workers' side is what waits)"
    )


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: small and short")
    p.add_argument("--skip-dbos", action="store_true", help="do not run (c)")
    p.add_argument("--profile", action="store_true", help="run (b) under cProfile, print hot spots")
    p.add_argument("--instances", type=int, help="instances for (b) and DBOS loop-all")
    p.add_argument("--seconds", type=float, help="measured window of (b) and (c)")
    p.add_argument("--warmup", type=float, help="warm-up before each window")
    p.add_argument("--per-instance", type=int, default=1, help="sender tasks per instance")
    p.add_argument(
        "--pairs",
        type=int,
        help="trusted and sandboxed (b) pairs, one after the other (default 3, quick 1);"
        " the bar is judged on the median ratio",
    )
    p.add_argument(
        "--dbos-configs",
        default=",".join(DBOS_CONFIGS),
        help=f"comma-separated DBOS configurations ({', '.join(DBOS_CONFIGS)})",
    )
    p.add_argument("--dir", default=None, help="parent of the temporary database directory")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--dbos-worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.dbos_worker:
        dbos_worker(args.dbos_worker, args.dir, args.instances, args.seconds, args.warmup)
        return 0

    if args.quick:
        s = Settings(100, 0.5, 0.2, 0.3, 50, 20, 50, 150, args.per_instance)
    else:
        s = Settings(1000, 5.0, 1.0, 3.0, 2000, 200, 500, 1500, args.per_instance)
    s.pairs = args.pairs or (1 if args.quick else 3)
    if args.instances:
        s.instances = args.instances
    if args.seconds:
        s.seconds = args.seconds
    if args.warmup is not None:
        s.warmup = args.warmup
    s.dbos_configs = [c for c in args.dbos_configs.split(",") if c]
    unknown = set(s.dbos_configs) - set(DBOS_CONFIGS)
    if unknown:
        p.error(f"unknown DBOS configurations: {sorted(unknown)}")

    directory = tempfile.mkdtemp(prefix="backstate-durable-", dir=args.dir)
    res = Results()
    started = time.perf_counter()
    print(
        f"{platform.python_implementation()} {platform.python_version()}, SQLite"
        f" {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, {platform.machine()},"
        f" load average {os.getloadavg()[0]:.1f}; databases in {directory}"
        f" ({_fs_of(os.path.realpath(directory))})"
    )
    try:
        print("(a) raw SQLite ...", flush=True)
        res.rows["raw_before"] = bench_raw(directory, s.raw_seconds)
        for pair in range(s.pairs):
            for mode in (TRUSTED, SANDBOXED):
                key = mode.key if pair == 0 else f"{mode.key}#{pair + 1}"
                print(f"(b) backstate, {s.instances:,} instances, {mode.label} ...", flush=True)
                res.rows[key] = asyncio.run(
                    bench_backstate(directory, s, mode, args.profile and pair == 0)
                )
        print("(a) raw SQLite again ...", flush=True)
        res.rows["raw_after"] = bench_raw(directory, s.raw_seconds)
        for orgs in SCALING_ORGS:
            for workers in SCALING_WORKERS:
                mode = Mode(True, orgs, workers)
                if mode.key not in res.rows:
                    print(f"(b) scaling: {mode.label} ...", flush=True)
                    res.rows[mode.key] = asyncio.run(bench_backstate(directory, s, mode))
        print("latency and timers on an idle store ...", flush=True)
        res.rows["idle"] = asyncio.run(bench_latency_and_timers(directory, s))
        if not args.skip_dbos:
            version = _dbos_version()
            if version is None:
                res.errors.append(
                    "peer DBOS: dbos is not installed: .venv/bin/pip install -e '.[bench]'"
                    " (or --skip-dbos)"
                )
            else:
                print(f"(c) DBOS Transact {version}: {', '.join(s.dbos_configs)} ...", flush=True)
                res.rows["dbos"] = run_dbos(directory, s)
                print("(a) raw SQLite once more ...", flush=True)
                res.rows["raw_after_dbos"] = bench_raw(directory, s.raw_seconds)
        raws = [res.rows[k] for k in RAW_RUNS if k in res.rows]
        res.rows["raw"] = max(raws, key=lambda r: r["rate"])
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print_report(res, s, directory)
    print(
        f"\ntotal time {time.perf_counter() - started:.0f} s,"
        f" load average now {os.getloadavg()[0]:.1f} (other processes skew every number)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(res.rows, indent=2, default=str))

    failed = list(res.errors)
    if not all(res.rows[k].get("verified") for k in RAW_RUNS if k in res.rows):
        failed.append("raw SQLite row count")
    for key, run in res.rows.items():
        if key.split("#")[0] == TRUSTED.key or key.startswith("sandboxed-"):
            if "error" in run:
                failed.append(f"(b) {run['mode']} failed: {run['error'][:300]}")
            elif not run["verified"]:
                failed.append(f"(b) {run['mode']}: transitions not verified")
    idle = res.rows.get("idle", {})
    if idle.get("timers_fired") != idle.get("timers"):
        failed.append("timers did not all fire")
    for d in res.rows.get("dbos") or []:
        if "rate" not in d:
            failed.append(f"peer DBOS {d['config']} failed: {d['error'][:300]}")
        elif not d.get("verified"):
            failed.append(f"peer DBOS {d['config']}: step count not verified")
    if failed:
        print("FAILED:", *failed, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
