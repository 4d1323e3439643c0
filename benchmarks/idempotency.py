"""What an idempotency key costs a send: ``Backstate`` (trusted, the toggle machine of
durable.py) driven by one sender per instance, each send with a fresh key (what the
Python client sends on every call it may retry) against the same run without keys, in
pairs run one after the other in this process (the VM's speed drifts between runs), on
SQLite (WAL, ``synchronous=FULL``) and on PostgreSQL (the local server, a throwaway
database) unless ``--skip-postgres``.

Each run is verified: every acknowledged send is one committed transition, and with keys
every key is stored once. Then every key of one instance is sent again: the repeats
answer with their first state and apply nothing.

Usage::

    .venv/bin/python benchmarks/idempotency.py            # ~1 minute
    .venv/bin/python benchmarks/idempotency.py --quick    # smoke run

Exits 1 if a verification or a run fails; not when the ratio is low.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TOGGLE = Path(__file__).with_name("toggle_machine.py")
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def run(
    store: Any, instances: int, seconds: float, warmup: float, keyed: bool
) -> dict[str, Any]:
    """One run on ``store`` (a SQLite path or a store), the collector set as the server
    sets it once its instances exist, and put back as it was afterwards."""
    from backstate.runtime import Backstate
    from backstate.server._gc import tune_gc

    counts = [0] * instances
    thresholds = gc.get_threshold()
    try:
        return await _run(Backstate(store), instances, seconds, warmup, keyed, tune_gc, counts)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


async def _run(
    runtime: Any,
    instances: int,
    seconds: float,
    warmup: float,
    keyed: bool,
    tune_gc: Any,
    counts: list[int],
) -> dict[str, Any]:
    from backstate.machine import load_file

    stop = False
    async with runtime as bs:
        bs.deploy("toggle", load_file(TOGGLE).machine)
        names = [f"i{i}" for i in range(instances)]
        for chunk in range(0, instances, 500):
            await asyncio.gather(*(bs.create("toggle", n) for n in names[chunk : chunk + 500]))
        tune_gc()  # the collector as `backstate serve` sets it once its instances exist

        async def sender(i: int) -> None:
            while not stop:
                key = f"k{i}-{counts[i]}" if keyed else None
                await bs.send("toggle", names[i], "toggle", idempotency_key=key)
                counts[i] += 1

        tasks = [asyncio.create_task(sender(i)) for i in range(instances)]
        await asyncio.sleep(warmup)
        done0, cpu0, start = sum(counts), time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        done1, cpu1, elapsed = sum(counts), time.process_time(), time.perf_counter() - start
        stop = True
        await asyncio.gather(*tasks)

        problems = []
        for i, name in enumerate(names):
            state = await bs.get("toggle", name)
            if state.seq != counts[i]:
                problems.append(f"{name}: seq {state.seq}, sent {counts[i]}")
        replayed = 0
        if keyed:
            # Every key of the first instance again: answered, nothing applied.
            before = (await bs.get("toggle", names[0])).seq
            for n in range(counts[0]):
                await bs.send("toggle", names[0], "toggle", idempotency_key=f"k0-{n}")
                replayed += 1
            after = (await bs.get("toggle", names[0])).seq
            if after != before:
                problems.append(f"{replayed} repeats moved {names[0]} from {before} to {after}")
    return {
        "rate": (done1 - done0) / elapsed,
        "cpu_us": 1e6 * (cpu1 - cpu0) / max(done1 - done0, 1),
        "problems": problems[:5],
        "replayed": replayed,
    }


async def pairs(label: str, make: Any, args: argparse.Namespace) -> dict[str, Any]:
    rows: dict[str, list[dict[str, Any]]] = {"plain": [], "keyed": []}
    for p in range(args.pairs):
        for mode in ("plain", "keyed"):
            print(f"{label}: pair {p + 1}, {mode} ...", flush=True)
            rows[mode].append(
                await run(
                    make(f"{mode}{p}"), args.instances, args.seconds, args.warmup, mode == "keyed"
                )
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: small and short")
    p.add_argument("--skip-postgres", action="store_true", help="SQLite only")
    p.add_argument("--instances", type=int, default=500, help="instances, one sender each")
    p.add_argument("--seconds", type=float, default=4.0, help="measured window of each run")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up before each window")
    p.add_argument("--pairs", type=int, default=2, help="plain/keyed pairs per store")
    p.add_argument("--admin-url", default=ADMIN_URL, help="PostgreSQL to make a database in")
    args = p.parse_args(argv)
    if args.quick:
        args.instances, args.seconds, args.warmup, args.pairs = 50, 0.5, 0.2, 1

    print(
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs,"
        f" load average {os.getloadavg()[0]:.1f}; {args.instances} instances, one sender each"
    )
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="backstate-idem-") as directory:

        def sqlite(name: str) -> Any:
            return os.path.join(directory, f"{name}.db")

        results["SQLite"] = asyncio.run(pairs("SQLite", sqlite, args))
        if not args.skip_postgres:
            import psycopg
            from psycopg import sql

            from backstate.store import PostgresStore

            db = f"backstate_idem_{secrets.token_hex(4)}"
            admin = psycopg.connect(args.admin_url, autocommit=True)
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
            url = args.admin_url.rpartition("/")[0] + "/" + db
            try:

                def postgres(name: str) -> Any:
                    with psycopg.connect(url, autocommit=True) as conn:
                        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
                    return PostgresStore(f"{url}?options=-csearch_path%3D{name}")

                results["PostgreSQL"] = asyncio.run(pairs("PostgreSQL", postgres, args))
            finally:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db))
                )
                admin.close()

    failed = False
    print()
    print(
        f"{'store':<12}{'sends/s plain':>15}{'sends/s keyed':>15}{'keyed/plain':>13}"
        f"{'CPU us plain':>14}{'CPU us keyed':>14}"
    )
    for store, rows in results.items():
        plain, keyed = rows["plain"], rows["keyed"]
        ratios = [k["rate"] / pl["rate"] for pl, k in zip(plain, keyed, strict=True)]
        print(
            f"{store:<12}{statistics.median(r['rate'] for r in plain):>15,.0f}"
            f"{statistics.median(r['rate'] for r in keyed):>15,.0f}"
            f"{statistics.median(ratios):>13.2f}"
            f"{statistics.median(r['cpu_us'] for r in plain):>14.0f}"
            f"{statistics.median(r['cpu_us'] for r in keyed):>14.0f}"
            f"   pairs: {', '.join(f'{r:.2f}' for r in ratios)}"
        )
        for r in plain + keyed:
            for problem in r["problems"]:
                failed = True
                print(f"  VERIFY FAILED ({store}): {problem}")
        print(f"  repeats answered without applying: {sum(r['replayed'] for r in keyed)}")
    print("(CPU us: this process's CPU time per committed send, every thread)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
