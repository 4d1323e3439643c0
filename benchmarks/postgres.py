"""Durable throughput of ``backstate.runtime.Backstate`` on PostgreSQL (one node),
against the same two-row transaction done directly on the same server.

One run measures, in a throwaway database (dropped afterwards):

* (a) psycopg baseline: N worker processes, one connection each, in a loop:
  ``BEGIN; UPDATE instances ... RETURNING seq; INSERT INTO history ...; COMMIT`` (one
  round trip per statement, prepared after the first few), on the tables and indexes
  ``PostgresStore`` creates, with the toggle machine's snapshot as the payload. Run
  before and after (b); the better run counts;
* (a') pgbench with the same transaction as a custom script (``-M prepared``,
  ``-c N -j 2``); pgbench comes with PostgreSQL's client package (``--skip-pgbench``
  leaves it out);
* (b) backstate: committed transitions/s of ``Backstate(PostgresStore(...))`` across
  1,000 instances of the toggle machine of ``durable.py`` (one asyncio sender per
  instance), verified afterwards from every instance's ``seq`` and the history table;
  also transitions per commit (group commit) and the time per commit;
* the latency of one ``send`` (commit and settle) on an idle store;
* (c) many nodes: 1, 2 and 3 separate processes, each ``Backstate(PostgresStore(...),
  cluster=Cluster(...))`` on one database, each sending to the instances of the shards
  it holds (the same 1,000 toggle instances in all); committed transitions/s summed.

It prints b/a and b/a'. Usage::

    .venv/bin/python benchmarks/postgres.py            # full run (about a minute)
    .venv/bin/python benchmarks/postgres.py --quick    # smoke run (a few seconds)

``--admin-url`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``) is where
the throwaway database is created; ``--connections`` sets N (default 8). Exits 1 if a
verification fails or a baseline fails to run (pgbench missing included), naming it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from durable import _pct, _toggle_machine  # noqa: E402

BAR = 1.0
MACHINE = "toggle"
UPDATE = (
    "UPDATE instances SET seq = seq + 1, snapshot = %s, updated_at = %s"
    " WHERE machine = 'toggle' AND name = %s RETURNING seq"
)
INSERT = "INSERT INTO history VALUES ('toggle', %s, %s, %s, %s, %s)"
PGBENCH_SCRIPT = """\\set i random(0, :n - 1)
BEGIN;
UPDATE instances SET seq = seq + 1, snapshot = :snap, updated_at = :ts WHERE machine = 'toggle' AND name = 'i' || :i RETURNING seq \\gset
INSERT INTO history VALUES ('toggle', 'i' || :i, :seq, :event, :snap, :ts);
END;
"""


@dataclass
class Settings:
    instances: int
    seconds: float
    warmup: float
    baseline_seconds: float
    connections: int
    latency_sends: int


# --------------------------------------------------------------------------- setup


def _payloads() -> tuple[str, str]:
    """The toggle machine's snapshot and event, as backstate stores them."""
    snapshot, _ = _toggle_machine().initial_transition()
    encode = json.JSONEncoder(separators=(",", ":")).encode
    return encode(snapshot.to_json()), encode({"type": "toggle"})


def _schema_url(database_url: str, schema: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    return f"{database_url}?options=-csearch_path%3D{schema}"


def _prepare_baseline(url: str, n: int, snapshot: str, event: str) -> None:
    """PostgresStore's tables, ``n`` instances each with their creation in history."""
    from backstate.store import HistoryRow, InstanceRow, PostgresStore, RawJson, WriteBatch

    store = PostgresStore(url)
    try:
        rows = [
            InstanceRow(MACHINE, f"i{i}", "v1", 0, RawJson(snapshot), "running", None, 0, 0)
            for i in range(n)
        ]
        history = [
            ((MACHINE, r.name), HistoryRow(0, RawJson(event), RawJson(snapshot), 0)) for r in rows
        ]
        store.commit(WriteBatch(instance_creates=rows, history=history))
    finally:
        store.close()


# --------------------------------------------------------------------------- (a) psycopg


def _baseline_worker(
    url: str, names: list[str], start_at: float, seconds: float, snapshot: str, event: str
) -> tuple[int, list[float]]:
    conn = psycopg.connect(url, autocommit=True)
    try:
        for name in names[:5]:  # warm up: prepared statements, caches
            with conn.transaction():
                conn.execute(UPDATE, (snapshot, 0, name))
                conn.execute("SELECT 1")
        time.sleep(max(0.0, start_at - time.time()))
        end = start_at + seconds
        count, samples = 0, []
        clock = time.perf_counter
        while True:
            name = names[count % len(names)]
            t0 = clock()
            with conn.transaction():
                row = conn.execute(UPDATE, (snapshot, 0, name)).fetchone()
                assert row is not None
                conn.execute(INSERT, (name, row[0], event, snapshot, 0))
            samples.append(clock() - t0)
            count += 1
            if time.time() >= end:
                return count, samples
    finally:
        conn.close()


def bench_psycopg(url: str, s: Settings, seconds: float) -> dict[str, Any]:
    snapshot, event = _payloads()
    before = _history_rows(url)
    names = [f"i{i}" for i in range(s.instances)]
    # Each connection owns a slice of the instances, so none waits for another's row lock.
    slices = [names[k :: s.connections] for k in range(s.connections)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(s.connections) as pool:
        start_at = time.time() + 1.5 + 0.2 * s.connections  # after every worker connected
        results = pool.starmap(
            _baseline_worker, [(url, part, start_at, seconds, snapshot, event) for part in slices]
        )
    commits = sum(n for n, _ in results)
    samples = [x for _, xs in results for x in xs]
    return {
        "connections": s.connections,
        "commits": commits,
        "rate": commits / seconds,
        "commit_p50_ms": 1000 * _pct(samples, 50),
        "commit_p99_ms": 1000 * _pct(samples, 99),
        "verified": _history_rows(url) - before == commits,
    }


def _history_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM history").fetchone()
    return int(row[0]) if row else 0


# --------------------------------------------------------------------------- (a') pgbench


def bench_pgbench(url: str, s: Settings, seconds: float, work: str) -> dict[str, Any]:
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        return {"error": "pgbench not found on PATH (it comes with postgresql-client)"}
    snapshot, event = _payloads()
    script = Path(work) / "two_rows.sql"
    script.write_text(PGBENCH_SCRIPT)
    info = psycopg.conninfo.conninfo_to_dict(url)
    options = str(info.pop("options", ""))
    dsn = psycopg.conninfo.make_conninfo("", **info)
    cmd = [pgbench, "-n", "-M", "prepared", "-c", str(s.connections), "-j", "2"]
    cmd += ["-T", str(max(1, round(seconds))), "-f", str(script)]
    for name, value in (("n", s.instances), ("snap", snapshot), ("event", event), ("ts", 0)):
        cmd += ["-D", f"{name}={value}"]
    before = _history_rows(url)
    proc = subprocess.run(
        [*cmd, dsn],
        capture_output=True,
        text=True,
        timeout=60 + seconds,
        env={**os.environ, "PGOPTIONS": options},
        check=False,
    )
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", proc.stdout)
    if proc.returncode != 0 or match is None:
        return {"error": (proc.stderr or proc.stdout).strip()[-300:]}
    done = re.search(r"number of transactions actually processed: (\d+)", proc.stdout)
    commits = int(done.group(1)) if done else -1
    return {
        "connections": s.connections,
        "rate": float(match.group(1)),
        "commits": commits,
        "verified": _history_rows(url) - before == commits,
    }


# --------------------------------------------------------------------------- (b) backstate


async def bench_backstate(url: str, s: Settings) -> dict[str, Any]:
    from backstate.runtime import Backstate
    from backstate.store import PostgresStore

    n = s.instances
    names = [f"i{i}" for i in range(n)]
    counts = [0] * n
    out: dict[str, Any] = {"instances": n}
    async with Backstate(PostgresStore(url)) as bs:
        bs.deploy(MACHINE, _toggle_machine())
        start = time.perf_counter()
        for chunk in range(0, n, 500):
            await asyncio.gather(*(bs.create(MACHINE, name) for name in names[chunk : chunk + 500]))
        out["create_rate"] = n / (time.perf_counter() - start)

        stop = False
        event = {"type": "toggle"}

        async def sender(i: int) -> None:
            while not stop:
                await bs.send(MACHINE, names[i], event)
                counts[i] += 1

        tasks = [asyncio.create_task(sender(i)) for i in range(n)]
        await asyncio.sleep(s.warmup)
        stats = bs.processor.stats
        batches0, commit_seconds0, done0 = stats.commits, stats.commit_seconds, sum(counts)
        start = time.perf_counter()
        await asyncio.sleep(s.seconds)
        done1, elapsed = sum(counts), time.perf_counter() - start
        batches = stats.commits - batches0
        commit_seconds = stats.commit_seconds - commit_seconds0
        stop = True
        await asyncio.gather(*tasks)
        transitions = done1 - done0
        out.update(
            transitions=transitions,
            seconds=elapsed,
            rate=transitions / elapsed,
            batches=batches,
            per_batch=transitions / batches if batches else float("nan"),
            commit_ms=1000 * commit_seconds / batches if batches else float("nan"),
            commit_share=commit_seconds / elapsed,
        )

        # Every acknowledged send is one committed transition, no more, no fewer.
        problems = []
        for i, name in enumerate(names):
            state = await bs.get(MACHINE, name)
            if state.seq != counts[i] or state.context["count"] != counts[i]:
                problems.append(f"{name}: seq {state.seq}, {state.context}, sent {counts[i]}")
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT instance) FROM history WHERE machine = 'toggle'"
            ).fetchone()
        if row != (sum(counts) + n, n):
            problems.append(f"history has {row}; expected ({sum(counts) + n}, {n})")
        out["verified"] = not problems
        out["problems"] = problems[:5]

        samples = []
        for _ in range(s.latency_sends):
            t0 = time.perf_counter()
            await bs.send(MACHINE, names[0], event)
            samples.append(1000 * (time.perf_counter() - t0))
        out["latency_p50"] = _pct(samples, 50)
        out["latency_p99"] = _pct(samples, 99)
    return out


# --------------------------------------------------------------------------- (c) nodes


def _node_worker(url: str, n: int, nodes: int, seconds: float, barrier: Any, out: Any) -> None:
    asyncio.run(_node_main(url, n, nodes, seconds, barrier, out))


async def _node_main(url: str, n: int, nodes: int, seconds: float, barrier: Any, out: Any) -> None:
    from backstate.runtime import Backstate, Cluster, Unavailable
    from backstate.store import PostgresStore

    cluster = Cluster(f"http://bench-node-{os.getpid()}")
    async with Backstate(PostgresStore(url), cluster=cluster) as bs:
        bs.deploy(MACHINE, _toggle_machine())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the shards are spread over every node
            with psycopg.connect(url) as conn:
                row = conn.execute(
                    "SELECT count(DISTINCT node), count(*) FROM shard_leases"
                    " WHERE expires_at > now()"
                ).fetchone()
            if row == (nodes, 64):
                break
            await asyncio.sleep(0.3)
        await asyncio.sleep(2.0)  # every node's held set is current
        await asyncio.to_thread(barrier.wait)
        mine = [f"i{i}" for i in range(n) if cluster.owns((MACHINE, f"i{i}"))]
        await asyncio.gather(*(bs.create(MACHINE, name) for name in mine))
        await asyncio.to_thread(barrier.wait)
        count = 0
        stop = time.monotonic() + seconds
        event = {"type": "toggle"}

        async def sender(name: str) -> None:
            nonlocal count
            while time.monotonic() < stop:
                try:
                    await bs.send(MACHINE, name, event)
                except Unavailable:
                    return  # its shard moved to another node
                count += 1

        started = time.perf_counter()
        await asyncio.gather(*(sender(name) for name in mine))
        out.put((len(mine), count, time.perf_counter() - started, len(cluster.held)))


def bench_nodes(database_url: str, s: Settings, nodes: int) -> dict[str, Any]:
    url = _schema_url(database_url, f"nodes{nodes}")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(nodes)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_node_worker, args=(url, s.instances, nodes, s.seconds, barrier, out))
        for _ in range(nodes)
    ]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=120 + s.seconds) for _ in procs]
    for proc in procs:
        proc.join(30)
    transitions = sum(r[1] for r in results)
    seconds = max(r[2] for r in results)
    return {
        "nodes": nodes,
        "instances": sum(r[0] for r in results),
        "shards": [r[3] for r in results],
        "transitions": transitions,
        "rate": transitions / seconds,
        "verified": _history_rows(url) == transitions + sum(r[0] for r in results),
    }


# --------------------------------------------------------------------------- report


def _fmt(x: float, digits: int = 0) -> str:
    return "n/a" if x != x else f"{x:,.{digits}f}"


def print_report(rows: dict[str, Any], s: Settings) -> None:
    print()
    print(f"{'measure':<50} {'result':>12}  notes")
    print("-" * 100)
    runs = [r for r in (rows.get("psycopg_before"), rows.get("psycopg_after")) if r]
    a = max(runs, key=lambda r: r["rate"]) if runs else None
    for key, when in (("psycopg_before", "before (b)"), ("psycopg_after", "after (b)")):
        r = rows.get(key)
        if r:
            mark = " *used*" if r is a else ""
            print(
                f"{'(a) psycopg two-row transactions/s, ' + when:<50} {_fmt(r['rate']):>12}"
                f"  {r['connections']} connections, commit p50/p99 {r['commit_p50_ms']:.2f}/"
                f"{r['commit_p99_ms']:.2f} ms, verified={r['verified']}{mark}"
            )
    pg = rows.get("pgbench")
    label = "(a') pgbench two-row transactions/s"
    if pg is None:
        print(f"{label:<50} {'skipped':>12}  --skip-pgbench")
    elif "error" in pg:
        print(f"{label:<50} {'failed':>12}  {pg['error']}")
    else:
        print(
            f"{label:<50} {_fmt(pg['rate']):>12}"
            f"  -M prepared -c {pg['connections']} -j 2, verified={pg['verified']}"
        )
    b = rows.get("backstate")
    if b:
        print(
            f"{'(b) backstate transitions/s (1 node)':<50} {_fmt(b['rate']):>12}"
            f"  {b['instances']:,} instances, {b['seconds']:.1f} s, verified={b['verified']}"
        )
        print(
            f"{'    transitions per commit (group commit)':<50} {_fmt(b['per_batch'], 1):>12}"
            f"  {b['batches']:,} commits, {_fmt(b['commit_ms'], 1)} ms each,"
            f" {100 * b['commit_share']:.0f}% of wall time in store.commit"
        )
        print(f"{'    creates/s':<50} {_fmt(b['create_rate']):>12}")
        print(
            f"{'send-and-settle latency p50 / p99 (ms)':<50}"
            f" {_fmt(b['latency_p50'], 2) + ' / ' + _fmt(b['latency_p99'], 2):>12}"
            f"  idle store, {s.latency_sends} sequential sends to one instance"
        )
    print("-" * 100)
    if a and b:
        ratio = b["rate"] / a["rate"]
        verdict = "PASS" if ratio >= BAR else "MISS"
        print(f"{'b/a (backstate / psycopg loop)':<50} {ratio:>12.2f}  bar >= {BAR:g}: {verdict}")
    if b and pg and "rate" in pg:
        ratio = b["rate"] / pg["rate"]
        verdict = "PASS" if ratio >= BAR else "MISS"
        label = "b/a' (backstate / pgbench)"
        print(f"{label:<50} {ratio:>12.2f}  bar >= {BAR:g}: {verdict}")
    for nodes in (1, 2, 3):
        c = rows.get(f"nodes{nodes}")
        if c:
            ratio = f"{c['rate'] / a['rate']:.2f}x (a)" if a else ""
            print(
                f"{f'(c) backstate transitions/s, {nodes} node process(es)':<50}"
                f" {_fmt(c['rate']):>12}  {ratio}, shards per node {c['shards']},"
                f" verified={c['verified']}"
            )
    if b and b.get("problems"):
        print("backstate verification problems:", *b["problems"], sep="\n  ")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: small and short")
    p.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--connections", type=int, default=8, help="baseline connections")
    p.add_argument("--instances", type=int)
    p.add_argument("--seconds", type=float, help="measured window of (a) and (b)")
    p.add_argument("--skip-pgbench", action="store_true", help="do not run (a')")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        s = Settings(100, 0.5, 0.2, 0.5, min(args.connections, 2), 20)
    else:
        s = Settings(1000, 5.0, 1.0, 5.0, args.connections, 500)
    if args.instances:
        s.instances = args.instances
    if args.seconds:
        s.seconds = s.baseline_seconds = args.seconds

    name = f"backstate_bench_{secrets.token_hex(4)}"
    admin = psycopg.connect(args.admin_url, autocommit=True)
    version = admin.execute("SHOW server_version").fetchone()
    settings = dict(
        admin.execute(
            "SELECT name, setting FROM pg_settings"
            " WHERE name IN ('fsync', 'synchronous_commit', 'commit_delay')"
        ).fetchall()
    )
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database_url = args.admin_url.rpartition("/")[0] + "/" + name
    work = tempfile.mkdtemp(prefix="backstate-pg-bench-")
    print(
        f"{platform.python_implementation()} {platform.python_version()}, PostgreSQL"
        f" {version[0] if version else '?'} ({', '.join(f'{k}={v}' for k, v in settings.items())}),"
        f" {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; database {name}"
    )
    rows: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        baseline = _schema_url(database_url, "baseline")
        _prepare_baseline(baseline, s.instances, *_payloads())
        print(f"(a) psycopg loop, {s.connections} connections ...", flush=True)
        rows["psycopg_before"] = bench_psycopg(baseline, s, s.baseline_seconds)
        if not args.skip_pgbench:
            print("(a') pgbench ...", flush=True)
            rows["pgbench"] = bench_pgbench(baseline, s, s.baseline_seconds, work)
        print(f"(b) backstate, {s.instances:,} instances ...", flush=True)
        rows["backstate"] = asyncio.run(bench_backstate(_schema_url(database_url, "bs"), s))
        for nodes in (1, 2, 3):
            print(f"(c) backstate, {nodes} node process(es) ...", flush=True)
            rows[f"nodes{nodes}"] = bench_nodes(database_url, s, nodes)
        print("(a) psycopg loop again ...", flush=True)
        rows["psycopg_after"] = bench_psycopg(baseline, s, s.baseline_seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.close()
    print_report(rows, s)
    print(
        f"\ntotal time {time.perf_counter() - started:.0f} s,"
        f" load average now {os.getloadavg()[0]:.1f} (other processes skew every number)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=str))
    checked = {
        "(a) psycopg loop, before (b)": rows.get("psycopg_before"),
        "(a) psycopg loop, after (b)": rows.get("psycopg_after"),
        "(b) backstate": rows.get("backstate"),
        **{f"(c) {n} node(s)": rows.get(f"nodes{n}") for n in (1, 2, 3)},
    }
    if not args.skip_pgbench:
        checked["(a') pgbench"] = rows.get("pgbench")
    failed = []
    for label, r in checked.items():
        if r and "error" in r:
            failed.append(f"peer {label} failed: {r['error']}")
        elif not (r and r.get("verified")):
            failed.append(f"{label}: not verified")
    if failed:
        print("FAILED:", *failed, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
