"""Secondary-index queries and instance gets of ``backstate.runtime.Backstate`` on a
SQLite file of 1,000,000 instances (issue 6), against the same SQL run directly.

The data set: instances of a small ``order`` machine deployed with three indexes,
``owner`` (``$.owner``, a string; n/100 distinct values, about 100 instances each),
``total`` (``$.total``, a number from 0 to 999.99) and ``state`` (``@state``: open 80%,
paid 15%, shipped 5%). A million ``Backstate.create`` calls take about six minutes on
two cores, so most instances are written through ``SQLiteStore.commit`` with the rows
``create`` writes (computed by the runtime's own code: ``initial_transition``,
``index_entries``), and the last ones through ``Backstate.create`` into the nearly full
file, which gives the creation rate and rows to check the direct ones against. The file
is cached under ``.cache/bench-indexes/``, keyed by the store's schema version and this
script's data-set version; ``--rebuild`` builds it again.

Measured with a fresh ``Backstate`` on that file (the OS page cache warmed by reading the
file once), each call timed with ``time.perf_counter`` around the ``await``:

* ``get`` of random instances: not yet in the runtime's instance cache (each loads and
  decodes its row), then again from the cache, and at the end with the file dropped
  from the OS page cache (``posix_fadvise``);
* ``query`` with ``limit=50``: ``eq`` on a random owner, ``gte`` (ascending) and ``lt``
  (descending) on a random total, ``eq`` on a random state, every page of random owners'
  ``eq`` results through the cursor, and a ``gte 0`` page from a cursor at a random depth.

Peers, on a second ``sqlite3`` connection to the same file: the SQL the store runs
(``index_query_sql``) for the same parameters, the floor, so the runtime's overhead
shows as a ratio; and the same query written to seek the primary key on every bound
(``seek_sql`` below), where the store's SQL does not. ``EXPLAIN QUERY PLAN`` of both is
printed.

Usage::

    .venv/bin/python benchmarks/indexes.py              # full run (builds once: a few minutes)
    .venv/bin/python benchmarks/indexes.py --quick      # 20,000 instances, no cache, seconds
    .venv/bin/python benchmarks/indexes.py --rebuild    # build the cached data set again
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backstate.chart import Machine, setup
from backstate.runtime import Backstate, compile_selectors
from backstate.runtime._indexes import index_entries, index_query
from backstate.runtime._processor import CACHE_SIZE
from backstate.store import HistoryRow, IndexQuery, InstanceRow, RawJson, SQLiteStore, WriteBatch
from backstate.store._indexes import OPS, index_query_sql

HERE = Path(__file__).resolve().parent
CACHE = HERE.parent / ".cache" / "bench-indexes"
# Bump when the machine, the selectors or the generated contexts change: the cache key.
DATASET_VERSION = 1
MACHINE = "order"
SELECTORS = {"owner": "$.owner", "total": "$.total", "state": "@state"}
STAGES = ["open"] * 16 + ["paid"] * 3 + ["shipped"]
SEED = 6
LIMIT = 50
MIN_SAMPLES = 20  # per query measure, even past its time budget
CREATE_CHUNK = 5_000
COMMIT_ROWS = 5_000
BAR_GET_P99_MS = 5.0
BAR_EQ_P99_MS = 10.0
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
INIT_EVENT = RawJson(_encode({"type": "xstate.init", "input": None}))


@dataclass
class Settings:
    instances: int
    runtime_creates: int
    cold_gets: int
    warm_gets: int
    disk_gets: int
    queries: int  # per measure, at most
    budget: float  # seconds per measure, at most


@dataclass
class Measure:
    label: str
    ms: list[float] = field(default_factory=list)
    sql_ms: list[float] = field(default_factory=list)
    seek_ms: list[float] = field(default_factory=list)
    note: str = ""
    queries: list[IndexQuery] = field(default_factory=list)  # what the runtime ran
    instances: list[list[str]] = field(default_factory=list)  # what it answered


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _fmt(x: float, digits: int = 0) -> str:
    return "n/a" if x != x else f"{x:,.{digits}f}"


def order_machine() -> Machine:
    def stage(context: dict[str, Any], event: dict[str, Any], params: dict[str, Any]) -> bool:
        return bool(context["stage"] == params["is"])

    def at(stage: str) -> dict[str, Any]:
        return {"target": stage, "guard": {"type": "stage", "params": {"is": stage}}}

    return setup(guards={"stage": stage}).create_machine(
        {
            "id": MACHINE,
            "initial": "open",
            "context": {"owner": "", "total": 0, "stage": "open"},
            "states": {
                "open": {"always": [at("paid"), at("shipped")], "on": {"pay": "paid"}},
                "paid": {"on": {"ship": "shipped"}},
                "shipped": {},
            },
        }
    )


def owners(n: int) -> int:
    return max(1, n // 100)


def instance_name(i: int) -> str:
    return f"o{i:07d}"


def owner_name(i: int) -> str:
    return f"u{i:05d}"


def contexts(n: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(SEED)
    k = owners(n)
    for _ in range(n):
        yield {
            "owner": owner_name(rng.randrange(k)),
            "total": rng.randrange(100_000) / 100,
            "stage": rng.choice(STAGES),
        }


# --------------------------------------------------------------------------- the data set


class CreateRows:
    """The rows ``Backstate.create`` commits for a new instance with ``context``: the
    runtime's own initial transition, snapshot encoding and index entries."""

    def __init__(self) -> None:
        self.machine = order_machine()
        self.specs = compile_selectors(SELECTORS)

    def __call__(
        self, name: str, context: dict[str, Any], now: int
    ) -> tuple[InstanceRow, HistoryRow, frozenset[Any]]:
        snap, effects = self.machine.initial_transition(None, context=context)
        assert not effects
        text = RawJson(_encode(snap.to_json()))
        entries, skipped = index_entries(self.specs, snap.context, snap.state_strings)
        assert not skipped, skipped
        row = InstanceRow(MACHINE, name, "v1", 0, text, "running", None, now, now, {}, None)
        return row, HistoryRow(0, INIT_EVENT, text, now), entries


def build_via_store(path: str, items: Iterator[tuple[int, dict[str, Any]]]) -> float:
    """Commit ``items`` in batches of ``COMMIT_ROWS`` instances; the next batch is computed
    while the previous one commits. Returns the seconds taken."""
    rows = CreateRows()
    store = SQLiteStore(path)
    start = time.perf_counter()
    try:
        store.record_version(MACHINE, "v1", int(time.time() * 1000))
        with ThreadPoolExecutor(1) as pool:
            pending: Future[Any] | None = None
            while chunk := list(itertools.islice(items, COMMIT_ROWS)):
                batch = WriteBatch()
                now = int(time.time() * 1000)
                for i, context in chunk:
                    key = (MACHINE, instance_name(i))
                    row, history, entries = rows(key[1], context, now)
                    batch.instance_creates.append(row)
                    batch.history.append((key, history))
                    batch.index_puts.append((key, entries))
                if pending is not None:
                    pending.result()
                pending = pool.submit(store.commit, batch)
            if pending is not None:
                pending.result()
    finally:
        store.close()
    return time.perf_counter() - start


async def build_via_runtime(path: str, items: list[tuple[int, dict[str, Any]]]) -> float:
    async with Backstate(path) as bs:
        bs.deploy(MACHINE, order_machine(), indexes=SELECTORS)
        start = time.perf_counter()
        for first in range(0, len(items), CREATE_CHUNK):
            await asyncio.gather(
                *(
                    bs.create(MACHINE, instance_name(i), context=context)
                    for i, context in items[first : first + CREATE_CHUNK]
                )
            )
        return time.perf_counter() - start


def check_data_set(path: str, n: int, runtime_items: list[tuple[int, dict[str, Any]]]) -> list[str]:
    """Row counts, and the runtime's rows for a sample of its instances equal to what
    ``CreateRows`` computes for the same context (timestamps aside)."""
    problems = []
    rows = CreateRows()
    db = sqlite3.connect(path)
    try:
        counts = {
            table: db.execute(
                f"SELECT COUNT(*) FROM {table} WHERE machine = ?", (MACHINE,)
            ).fetchone()[0]
            for table in ("instances", "history", "instance_index")
        }
        want = {"instances": n, "history": n, "instance_index": 3 * n}
        if counts != want:
            problems.append(f"row counts {counts}, expected {want}")
        for i, context in random.Random(SEED).sample(runtime_items, min(200, len(runtime_items))):
            name = instance_name(i)
            row, history, entries = rows(name, context, 0)
            got = db.execute(
                "SELECT version, seq, snapshot, status, parent, children, desired_version"
                " FROM instances WHERE machine = ? AND name = ?",
                (MACHINE, name),
            ).fetchone()
            if got != ("v1", 0, row.snapshot, "running", None, "{}", None):
                problems.append(f"{name}: instance row {got} differs from {row}")
            got_history = db.execute(
                "SELECT seq, event, snapshot FROM history WHERE machine = ? AND instance = ?",
                (MACHINE, name),
            ).fetchall()
            if got_history != [(0, history.event, history.snapshot)]:
                problems.append(f"{name}: history {got_history} differs")
            got_entries = db.execute(
                "SELECT idx, kind, num, str FROM instance_index WHERE machine = ? AND instance = ?",
                (MACHINE, name),
            ).fetchall()
            if set(got_entries) != set(entries):
                problems.append(f"{name}: index entries {got_entries} differ from {entries}")
    finally:
        db.close()
    return problems[:5]


def build(path: Path, s: Settings) -> dict[str, Any]:
    building = path.with_name(path.name + ".building")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{building}{suffix}").unlink(missing_ok=True)
    n, k = s.instances, min(s.runtime_creates, s.instances)
    generated = enumerate(contexts(n))
    print(f"building {n:,} instances: {n - k:,} through SQLiteStore.commit ...", flush=True)
    store_seconds = build_via_store(str(building), itertools.islice(generated, n - k))
    via_runtime = list(generated)
    print(f"... and the last {k:,} through Backstate.create ...", flush=True)
    runtime_seconds = asyncio.run(build_via_runtime(str(building), via_runtime))
    problems = check_data_set(str(building), n, via_runtime)
    db = sqlite3.connect(building)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()  # the last connection: the WAL is folded in and removed
    building.rename(path)
    return {
        "instances": n,
        "owners": owners(n),
        "store_instances": n - k,
        "store_seconds": store_seconds,
        "runtime_instances": k,
        "runtime_seconds": runtime_seconds,
        "built": time.strftime("%Y-%m-%d %H:%M"),
        "bytes": path.stat().st_size,
        "problems": problems,
    }


def cached_data_set(s: Settings, rebuild: bool) -> tuple[Path, dict[str, Any], bool]:
    schema = SQLiteStore(":memory:").schema_version
    key = f"orders-{s.instances}-schema{schema}-data{DATASET_VERSION}"
    path, meta_path = CACHE / f"{key}.db", CACHE / f"{key}.json"
    if not rebuild and path.exists() and meta_path.exists():
        return path, json.loads(meta_path.read_text()), True
    CACHE.mkdir(parents=True, exist_ok=True)
    for old in CACHE.glob(f"orders-{s.instances}-*"):  # older builds: 700 MB a million
        old.unlink()
    meta = build(path, s)
    if not meta["problems"]:
        meta_path.write_text(json.dumps(meta, indent=2))
    return path, meta, False


# --------------------------------------------------------------------------- measuring


def seek_sql(q: IndexQuery) -> tuple[str, tuple[Any, ...]]:
    """The query as one primary-key seek: every bound on a key column. A string entry
    holds ``num = 0``, so a string bound follows ``num = 0``; an ``eq`` page's cursor is
    a bound on ``instance`` alone; any other cursor is a row value over the columns
    after the fixed ones, replacing the operator's bound on its side."""
    where, args = ["machine = ?", "idx = ?"], [q.machine, q.index]
    rest = ["kind", "num", "str", "instance"]
    if q.kind is not None:
        where.append("kind = ?")
        args.append(q.kind)
        rest.remove("kind")
        if q.kind == 1:
            where.append("num = 0")
            rest.remove("num")
    if q.op is not None:
        column = "str" if q.kind == 1 else "num"
        supersedes = ("lt", "lte") if q.descending else ("gt", "gte")
        if q.op == "eq":
            rest = ["instance"]
        if q.after is None or q.op not in supersedes:
            where.append(f"{column} {OPS[q.op]} ?")
            args.append(q.value)
    if q.after is not None:
        position = dict(zip(("kind", "num", "str", "instance"), q.after, strict=True))
        columns = ", ".join(rest)
        marks = ", ".join("?" * len(rest))
        where.append(f"({columns}) {'<' if q.descending else '>'} ({marks})")
        args.extend(position[c] for c in rest)
    order = " DESC" if q.descending else ""
    sql = (
        "SELECT kind, num, str, instance FROM instance_index WHERE "
        + " AND ".join(where)
        + f" ORDER BY kind{order}, num{order}, str{order}, instance{order} LIMIT ?"
    )
    return sql, (*args, q.limit)


def store_sql(q: IndexQuery) -> tuple[str, tuple[Any, ...]]:
    return index_query_sql(q, "?")


def _more(m: Measure, s: Settings, deadline: float) -> bool:
    return len(m.ms) < s.queries and (time.perf_counter() < deadline or len(m.ms) < MIN_SAMPLES)


async def _timed_query(bs: Backstate, m: Measure, kw: dict[str, Any]) -> None:
    """One query, its time, what it asked and which instances it found, into ``m``."""
    t0 = time.perf_counter()
    page = await bs.query(MACHINE, **kw)
    m.ms.append(1000 * (time.perf_counter() - t0))
    m.queries.append(_as_query(kw))
    m.instances.append([h[1] for h in page.hits])


async def timed_queries(
    bs: Backstate, m: Measure, s: Settings, params: Callable[[], dict[str, Any]]
) -> str:
    """Queries with ``params()`` and ``limit=LIMIT``. Returns a problem, or ''."""
    deadline = time.perf_counter() + s.budget
    while _more(m, s, deadline):
        await _timed_query(bs, m, {**params(), "limit": LIMIT})
    return ""


def _as_query(kw: dict[str, Any]) -> IndexQuery:
    return index_query(
        MACHINE,
        kw["index"],
        kw.get("op"),
        kw.get("value"),
        kw.get("descending", False),
        kw["limit"],
        kw.get("cursor"),
    )


def replay(db: sqlite3.Connection, m: Measure, problems: list[str]) -> None:
    """The runtime's queries as SQL: the store's statement and the seek."""
    for q, answered in zip(m.queries, m.instances, strict=True):
        for make, samples in ((store_sql, m.sql_ms), (seek_sql, m.seek_ms)):
            sql, args = make(q)
            t0 = time.perf_counter()
            rows = db.execute(sql, args).fetchall()
            samples.append(1000 * (time.perf_counter() - t0))
            if [r[3] for r in rows] != answered:
                problems.append(f"{m.label}: {make.__name__} answered differently for {q}")


async def page_owners(bs: Backstate, db: sqlite3.Connection, m: Measure, s: Settings) -> str:
    """Every page of random owners' ``eq`` results; only pages after the first (those
    with a cursor) are samples. Returns a problem, or ''."""
    rng = random.Random(SEED + 1)
    deadline = time.perf_counter() + s.budget
    n = owners(s.instances)
    walked = hits = 0
    while _more(m, s, deadline):
        owner = owner_name(rng.randrange(n))
        cursor, seen = None, []
        while True:
            kw: dict[str, Any] = {"index": "owner", "op": "eq", "value": owner, "limit": LIMIT}
            if cursor is not None:
                kw["cursor"] = cursor
            t0 = time.perf_counter()
            page = await bs.query(MACHINE, **kw)
            elapsed = 1000 * (time.perf_counter() - t0)
            if cursor is not None:
                m.ms.append(elapsed)
                m.queries.append(_as_query(kw))
                m.instances.append([h[1] for h in page.hits])
            seen.extend(h[1] for h in page.hits)
            cursor = page.cursor
            if cursor is None:
                break
        expected = [
            r[0]
            for r in db.execute(
                "SELECT instance FROM instance_index WHERE machine = ? AND idx = 'owner'"
                " AND kind = 1 AND str = ? ORDER BY instance",
                (MACHINE, owner),
            )
        ]
        if seen != expected:
            return f"paging {owner}: {len(seen)} hits, SQL has {len(expected)}"
        walked += 1
        hits += len(seen)
    m.note = f"{walked} owners paged to the end, {hits:,} hits, all equal to SQL"
    return ""


async def deep_cursor(bs: Backstate, m: Measure, s: Settings) -> str:
    """A ``gte 0`` page from the cursor of a random position (taken from a one-hit
    ``gte x`` page: the same form as the cursor of a page that deep). Returns ''."""
    rng = random.Random(SEED + 2)
    deadline = time.perf_counter() + s.budget
    while _more(m, s, deadline):
        x = rng.randrange(100_000) / 100
        probe = await bs.query(MACHINE, "total", op="gte", value=x, limit=1)
        if probe.cursor is None:
            continue
        kw = {"index": "total", "op": "gte", "value": 0, "limit": LIMIT, "cursor": probe.cursor}
        await _timed_query(bs, m, kw)
    return ""


async def timed_gets(bs: Backstate, names: list[str], problems: list[str]) -> list[float]:
    samples = []
    for name in names:
        t0 = time.perf_counter()
        state = await bs.get(MACHINE, name)
        samples.append(1000 * (time.perf_counter() - t0))
        if state.seq != 0 or state.value != state.context["stage"]:
            problems.append(f"get {name}: seq {state.seq}, value {state.value}")
    return samples


def sql_gets(db: sqlite3.Connection, names: list[str]) -> list[float]:
    sql = (
        "SELECT machine, name, version, seq, snapshot, status, parent, children, created_at,"
        " updated_at, desired_version FROM instances WHERE machine = ? AND name = ?"
    )
    samples = []
    for name in names:
        t0 = time.perf_counter()
        db.execute(sql, (MACHINE, name)).fetchall()
        samples.append(1000 * (time.perf_counter() - t0))
    return samples


def drop_from_os_cache(path: Path) -> bool:
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def read_through(path: Path) -> float:
    start = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass
    return time.perf_counter() - start


async def measure(path: Path, s: Settings) -> tuple[list[Measure], dict[str, Any], list[str]]:
    problems: list[str] = []
    print(f"  read the file once (into the OS page cache): {read_through(path):.1f} s")
    info: dict[str, Any] = {}
    n = s.instances
    rng = random.Random(SEED + 3)
    picked = [instance_name(i) for i in rng.sample(range(n), min(n, s.cold_gets + s.disk_gets))]
    cold_names, disk_names = picked[: s.cold_gets], picked[s.cold_gets :]
    recent = cold_names[-min(len(cold_names), CACHE_SIZE // 2) :]
    warm_names = [rng.choice(recent) for _ in range(s.warm_gets)]
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA query_only = 1")
    measures: list[Measure] = []
    try:
        async with Backstate(str(path)) as bs:
            bs.deploy(MACHINE, order_machine(), indexes=SELECTORS)

            cold = Measure("get, not in the runtime's cache")
            cold.ms = await timed_gets(bs, cold_names, problems)
            cold.sql_ms = sql_gets(db, cold_names)
            info["cache_entries"] = len(bs.processor.entries)
            cold.note = "loads and decodes the row; floor: SELECT by primary key"
            warm = Measure("get, in the runtime's cache")
            warm.ms = await timed_gets(bs, warm_names, problems)
            warm.sql_ms = sql_gets(db, warm_names)
            warm.note = f"{len(recent):,} instances just read, each again"
            measures += [cold, warm]

            owner_count = owners(n)

            def total() -> float:
                return rng.randrange(100_000) / 100

            queries: list[tuple[Measure, Callable[[], dict[str, Any]]]] = [
                (
                    Measure("eq owner (limit 50)", note=f"{owner_count:,} owners"),
                    lambda: {
                        "index": "owner",
                        "op": "eq",
                        "value": owner_name(rng.randrange(owner_count)),
                    },
                ),
                (
                    Measure("gte total, ascending (limit 50)"),
                    lambda: {"index": "total", "op": "gte", "value": total()},
                ),
                (
                    Measure("lt total, descending (limit 50)"),
                    lambda: {"index": "total", "op": "lt", "value": total(), "descending": True},
                ),
                (
                    Measure("eq @state (limit 50)", note="open 80%, paid 15%, shipped 5%"),
                    lambda: {"index": "state", "op": "eq", "value": rng.choice(STAGES)},
                ),
            ]
            paging = Measure("eq owner, next page by cursor (limit 50)")
            deep = Measure("gte 0 from a cursor at a random depth", note="(limit 50)")
            runs: list[tuple[Measure, Callable[[], Awaitable[str]]]] = [
                (m, lambda m=m, params=params: timed_queries(bs, m, s, params))
                for m, params in queries
            ]
            runs += [
                (paging, lambda: page_owners(bs, db, paging, s)),
                (deep, lambda: deep_cursor(bs, deep, s)),
            ]
            for m, run in runs:
                print(f"  {m.label} ...", flush=True)
                problem = await run()
                if problem:
                    problems.append(problem)
                replay(db, m, problems)
                measures.append(m)

            if disk_names and drop_from_os_cache(path):
                disk = Measure("get, file dropped from the OS page cache")
                disk.ms = await timed_gets(bs, disk_names, problems)
                disk.note = "posix_fadvise(DONTNEED) first: reads from the disk"
                measures.append(disk)
        info["plans"] = {
            m.label: (q, _plan(db, *store_sql(q)), _plan(db, *seek_sql(q)))
            for m in measures
            if m.queries
            for q in m.queries[:1]
        }
        info["sql"] = {m.label: store_sql(m.queries[0])[0] for m in measures if m.queries}
    finally:
        db.close()
    return measures, info, problems


def _plan(db: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[str]:
    return [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, args)]


PK_SEARCH = "SEARCH instance_index USING PRIMARY KEY ("


def _verdict(plan: list[str], q: IndexQuery) -> str:
    """``seek`` when one primary-key search bounds the value (if the query has one) and
    the cursor (if it has one); otherwise what is scanned or sorted instead."""
    search = [line for line in plan if line.startswith(PK_SEARCH)]
    if len(search) != 1:
        return "NOT A SEEK (no primary-key search)"
    used = [set(re.findall(r"[a-z]+", c)) for c in search[0][len(PK_SEARCH) : -1].split(" AND ")]
    faults = []
    column = "str" if q.kind == 1 else "num"
    bounds = [c for c in used if column in c and (q.op != "eq" or c == {column})]
    if q.op is not None and not bounds:
        faults.append("filters the value")
    if q.after is not None and not any("instance" in c for c in used):
        faults.append("filters the cursor")
    if any("TEMP B-TREE" in line for line in plan):
        faults.append("sorts every match")
    if any(line.startswith("SCAN") for line in plan):
        faults.append("scans")
    return f"NOT A SEEK: {', '.join(faults)}" if faults else "seek"


# --------------------------------------------------------------------------- report


def print_report(measures: list[Measure], info: dict[str, Any]) -> None:
    print()
    print(
        f"{'measure':<44} {'n':>7} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'SQL p50':>8} {'SQL p99':>8} {'x SQL':>6} {'x seek':>7}  notes"
    )
    print("-" * 118)
    for m in measures:
        p50, p99 = _pct(m.ms, 50), _pct(m.ms, 99)
        sql50, sql99 = _pct(m.sql_ms, 50), _pct(m.sql_ms, 99)
        seek50 = _pct(m.seek_ms, 50)
        vs_sql = _fmt(p50 / sql50, 1) if m.sql_ms else "-"
        vs_seek = _fmt(p50 / seek50, 1) if m.seek_ms else "-"
        print(
            f"{m.label:<44} {len(m.ms):>7,} {_fmt(p50, 3):>8} {_fmt(p99, 3):>8}"
            f" {_fmt(sql50, 3) if m.sql_ms else '-':>8} {_fmt(sql99, 3) if m.sql_ms else '-':>8}"
            f" {vs_sql:>6} {vs_seek:>7}  {m.note}"
        )
    print("-" * 118)
    print(
        "x SQL: runtime p50 / the store's SQL p50 on a second connection (the floor);"
        " x seek: runtime p50 / the seek SQL p50"
    )
    print(
        f"runtime instance cache after the cold gets: {info['cache_entries']:,} entries"
        f" (CACHE_SIZE {CACHE_SIZE:,})"
    )
    print("\nEXPLAIN QUERY PLAN (the store's SQL, then the seek):")
    for label, (query, plan, seek_plan) in info["plans"].items():
        print(f"  {label}")
        print(f"    SQL:  {info['sql'][label]}")
        for name, rows in (("store", plan), ("seek", seek_plan)):
            print(f"    {name:<5} [{_verdict(rows, query)}] " + " | ".join(rows))


def print_bars(measures: list[Measure]) -> None:
    by = {m.label: m for m in measures}
    cold, warm = by["get, not in the runtime's cache"], by["get, in the runtime's cache"]
    get99 = max(_pct(cold.ms, 99), _pct(warm.ms, 99))
    eq99 = _pct(by["eq owner (limit 50)"].ms, 99)
    for label, value, bar, extra in (
        (
            "get p99",
            get99,
            BAR_GET_P99_MS,
            f"cold {_fmt(_pct(cold.ms, 99), 3)} ms, warm {_fmt(_pct(warm.ms, 99), 3)} ms",
        ),
        ("eq query (limit 50) p99", eq99, BAR_EQ_P99_MS, "eq owner"),
    ):
        verdict = "PASS" if value < bar else "FAIL"
        print(f"bar: {label} < {bar:g} ms: {verdict} ({_fmt(value, 3)} ms; {extra})")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="20,000 instances, no cache, seconds")
    p.add_argument("--rebuild", action="store_true", help="build the cached data set again")
    p.add_argument("--instances", type=int, help="instances in the data set")
    p.add_argument(
        "--runtime-creates", type=int, help="how many of them Backstate.create writes (the last)"
    )
    args = p.parse_args(argv)
    if args.quick:
        s = Settings(20_000, 4_000, 2_000, 2_000, 0, 300, 0.5)
    else:
        s = Settings(1_000_000, 50_000, 20_000, 10_000, 2_000, 5_000, 10.0)
    if args.instances:
        s.instances = args.instances
    if args.runtime_creates is not None:
        s.runtime_creates = args.runtime_creates
    started = time.perf_counter()
    print(
        f"{platform.python_implementation()} {platform.python_version()}, SQLite"
        f" {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, {platform.machine()},"
        f" load average {os.getloadavg()[0]:.1f}"
    )
    temp = None
    if args.quick:
        temp = Path(tempfile.mkdtemp(prefix="backstate-indexes-"))
        path = temp / "orders.db"
        meta, reused = build(path, s), False
    else:
        path, meta, reused = cached_data_set(s, args.rebuild)
    try:
        how = "reused" if reused else "built"
        print(
            f"data set {how}: {path} ({meta['bytes'] / 2**20:,.0f} MiB, built {meta['built']}):"
            f" {meta['instances']:,} instances, {meta['owners']:,} owners"
        )
        if meta["store_instances"]:
            print(
                f"  {meta['store_instances']:,} via SQLiteStore.commit (the rows create writes,"
                f" batches of {COMMIT_ROWS:,}):"
                f" {_fmt(meta['store_instances'] / meta['store_seconds'])} instances/s"
            )
        if meta["runtime_instances"]:
            rate = meta["runtime_instances"] / meta["runtime_seconds"]
            print(
                f"  {meta['runtime_instances']:,} via Backstate.create (the last ones, gather of"
                f" {CREATE_CHUNK:,}): {_fmt(rate)} creates/s; all {meta['instances']:,} this way"
                f" would take {meta['instances'] / rate / 60:.1f} min"
            )
        if meta["runtime_instances"]:
            verdict = "FAILED" if meta["problems"] else "ok"
            print(f"  rows checked against the runtime's: {verdict}")
        print("measuring ...", flush=True)
        measures, info, problems = asyncio.run(measure(path, s))
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    print_report(measures, info)
    print()
    print_bars(measures)
    print(
        f"\ntotal time {time.perf_counter() - started:.0f} s,"
        f" load average now {os.getloadavg()[0]:.1f} (other processes skew every number)"
    )
    problems = meta["problems"] + problems
    if problems:
        print("VERIFICATION FAILED:", *problems[:10], sep="\n  ")
        return 1
    print("verified: data set rows, get answers, every query equal to its SQL, cursor paging")
    return 0


if __name__ == "__main__":
    sys.exit(main())
