"""HTTP and /rt throughput of a real ``backstate serve`` process.

Starts the server the way ``tests/server/test_e2e.py`` does (its ``Server`` class, the
toggler example deployed, SQLite in a temporary directory), creates N toggler instances,
then runs the load generator in a separate process (multiprocessing, ``spawn``):

* send-event: ``POST /machines/toggler/i/{name}/events`` ``{"event": "toggle"}`` over C
  HTTP/1.1 keep-alive connections, cycling through the instances. The load generator is
  ``wrk`` (C; ``apt-get install wrk``) when it is on the PATH: a Python client needs
  more CPU per request than the server and, on two cores, measures itself. Without wrk
  (or with ``--loader python``), C asyncio workers over httpx, each owning a disjoint
  slice of the instances;
* get: ``GET /machines/toggler/i/{name}``, same shape;
* peer: the same send-event load against a no-op ASGI app on uvicorn with ``serve``'s
  settings (httptools, uvloop, no access log), started by this run: what uvicorn and
  the machine allow at best, so send-event is also printed as a ratio of it;
* /rt: S WebSocket subscribers (``subscribe-to-instance``) spread over I instances; in
  each round one event is sent to every one of the I instances; the latency is the time
  from the send-event's HTTP response to each subscriber's ``instance-update``.

Usage::

    .venv/bin/python benchmarks/http_api.py            # full run (~40 s)
    .venv/bin/python benchmarks/http_api.py --quick    # smoke run (a few seconds)

The server and the load generator share the machine's cores; the numbers are a lower
bound for the server alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

BAR_RPS = 5000.0
BAR_P99_MS = 20.0


# A no-op ASGI app answering every request like a send-event (a body of the same size),
# served by uvicorn with the settings of ``backstate serve``.
NOOP_SERVER = """
import sys, uvicorn
BODY = b'{"ts":1795863909357,"state":"off","publicContext":{"toggleCount":1},"tags":[],"done":false}'
async def app(scope, receive, send):
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": BODY})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", lifespan="off",
            access_log=False, server_header=False, proxy_headers=False)
"""


def _noop_server() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", NOOP_SERVER, str(port)])
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the no-op uvicorn app did not start") from None
            time.sleep(0.05)


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _wrk_seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def _wrk(
    url: str,
    names: list[str],
    tokens: dict[str, str],
    method: str,
    seconds: float,
    concurrency: int,
    folder: Path,
) -> dict[str, Any]:
    """One phase with wrk (one thread, ``concurrency`` keep-alive connections); each
    request goes to the next instance, with that instance's token."""
    lua = folder / f"{method}.lua"
    request = (
        'wrk.format("POST", "/machines/toggler/i/" .. names[k] .. "/events", '
        '{["Content-Type"]="application/json", ["Authorization"]="Bearer " .. tokens[k]}, '
        '\'{"event":"toggle"}\')'
        if method == "send"
        else 'wrk.format("GET", "/machines/toggler/i/" .. names[k], '
        '{["Authorization"]="Bearer " .. tokens[k]})'
    )
    lua.write_text(
        "names = {" + ",".join(json.dumps(n) for n in names) + "}\n"
        "tokens = {" + ",".join(json.dumps(tokens[n]) for n in names) + "}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i + 1\n"
        "  local k = (i % #names) + 1\n"
        f"  return {request}\n"
        "end\n"
    )
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(lua),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    done = re.search(r"(\d+) requests in ([\d.]+(?:us|ms|s|m))", out)
    assert done, out
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(int(g) for g in sock.groups()) if sock else 0)
    pcts = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.MULTILINE))
    return {
        "n": int(done.group(1)) - errors,
        "errors": errors,
        "elapsed": _wrk_seconds(done.group(2)),
        "p50": _wrk_seconds(pcts["50"]),
        "p99": _wrk_seconds(pcts["99"]),
    }


async def _closed_loop(
    url: str,
    names: list[str],
    headers: dict[str, dict[str, str]],
    method: str,
    seconds: float,
    concurrency: int,
) -> dict[str, Any]:
    import httpx

    conc = min(concurrency, len(names))
    lat: list[float] = []
    errors = 0
    # One client (one keep-alive connection) per worker: httpcore's pool scans all of its
    # connections on every request, which makes one 64-connection pool the bottleneck.
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(base_url=url, limits=one, timeout=30) for _ in range(conc)]
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient, mine: list[str]) -> None:
        nonlocal errors
        i = 0
        while True:
            name = mine[i % len(mine)]
            i += 1
            t0 = time.perf_counter()
            if t0 >= deadline:
                return
            if method == "send":
                r = await client.post(
                    f"/machines/toggler/i/{name}/events",
                    json={"event": "toggle"},
                    headers=headers[name],
                )
            else:
                r = await client.get(f"/machines/toggler/i/{name}", headers=headers[name])
            t1 = time.perf_counter()
            if r.status_code != 200:
                errors += 1
            else:
                lat.append(t1 - t0)

    start = time.perf_counter()
    await asyncio.gather(*(worker(clients[k], names[k::conc]) for k in range(conc)))
    elapsed = time.perf_counter() - start
    await asyncio.gather(*(c.aclose() for c in clients))
    return {
        "n": len(lat),
        "errors": errors,
        "elapsed": elapsed,
        "p50": _pct(lat, 50),
        "p99": _pct(lat, 99),
    }


async def _realtime(
    url: str,
    port: int,
    names: list[str],
    tokens: dict[str, str],
    per_instance: int,
    rounds: int,
    concurrency: int,
) -> dict[str, Any]:
    import httpx
    import websockets

    subs: list[tuple[str, Any]] = []
    recv_times: dict[int, list[float]] = {}
    got = asyncio.Event()
    expected = 0
    received = 0
    errors = 0

    async def open_sub(name: str) -> Any:
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}/rt?token={tokens[name]}", max_queue=None
        )
        await ws.send(
            json.dumps(
                {
                    "type": "subscribe-to-instance",
                    "requestId": "r1",
                    "machineName": "toggler",
                    "machineInstanceName": name,
                }
            )
        )
        first = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert first["type"] == "instance-update", first
        return ws

    async def reader(idx: int, ws: Any) -> None:
        nonlocal received
        times = recv_times[idx]
        async for raw in ws:
            t = time.perf_counter()
            msg = json.loads(raw)
            if msg.get("type") == "instance-update":
                times.append(t)
                received += 1
                if received >= expected:
                    got.set()

    sem = asyncio.Semaphore(50)

    async def open_limited(name: str) -> Any:
        async with sem:
            return await open_sub(name)

    wanted = [name for name in names for _ in range(per_instance)]
    sockets = await asyncio.gather(*(open_limited(n) for n in wanted))
    for idx, (name, ws) in enumerate(zip(wanted, sockets, strict=True)):
        subs.append((name, ws))
        recv_times[idx] = []
    readers = [asyncio.create_task(reader(i, ws)) for i, (_, ws) in enumerate(subs)]

    resp_times: dict[str, list[float]] = {n: [] for n in names}
    req_times: dict[str, list[float]] = {n: [] for n in names}
    conc = min(concurrency, len(names))
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        send_sem = asyncio.Semaphore(conc)
        hdr = {n: {"authorization": f"Bearer {tokens[n]}"} for n in names}

        async def send(name: str) -> None:
            nonlocal errors
            async with send_sem:
                t0 = time.perf_counter()
                r = await client.post(
                    f"/machines/toggler/i/{name}/events",
                    json={"event": "toggle"},
                    headers=hdr[name],
                )
                resp_times[name].append(time.perf_counter())
                req_times[name].append(t0)
                if r.status_code != 200:
                    errors += 1

        for _ in range(rounds):
            got.clear()
            expected += len(subs)
            await asyncio.gather(*(send(n) for n in names))
            try:
                await asyncio.wait_for(got.wait(), 30)
            except TimeoutError:
                break

    for t in readers:
        t.cancel()
    await asyncio.gather(*(ws.close() for _, ws in subs), return_exceptions=True)

    lat: list[float] = []
    lat_req: list[float] = []
    missing = 0
    for idx, (name, _) in enumerate(subs):
        rs = resp_times[name]
        ts = recv_times[idx]
        missing += max(0, len(rs) - len(ts))
        lat.extend(t - r for t, r in zip(ts, rs, strict=False))
        lat_req.extend(t - r for t, r in zip(ts, req_times[name], strict=False))
    return {
        "lat_req": lat_req,
        "n": len(lat),
        "subs": len(subs),
        "missing": missing,
        "errors": errors,
        "lat": lat,
    }


def _load(args: dict[str, Any], out: Any) -> None:
    """The load generator's process."""

    async def run() -> dict[str, Any]:
        url, names, tokens = args["url"], args["names"], args["tokens"]
        headers = {n: {"authorization": f"Bearer {tokens[n]}"} for n in names}
        res: dict[str, Any] = {}
        for phase in ("warm-up", "send", "get", "noop"):
            seconds = args["warmup"] if phase == "warm-up" else args["seconds"]
            method = "get" if phase == "get" else "send"
            target = args["noop_url"] if phase == "noop" else url
            if args["wrk"]:
                res[phase] = await asyncio.to_thread(
                    _wrk,
                    target,
                    names,
                    tokens,
                    method,
                    seconds,
                    args["concurrency"],
                    args["folder"],
                )
            else:
                res[phase] = await _closed_loop(
                    target, names, headers, method, seconds, args["concurrency"]
                )
        rt_names = names[: args["rt_instances"]]
        res["rt"] = await _realtime(
            url,
            args["port"],
            rt_names,
            tokens,
            args["rt_per_instance"],
            args["rt_rounds"],
            args["concurrency"],
        )
        return res

    try:
        out.put(("ok", asyncio.run(run())))
    except BaseException as e:  # report to the parent, never hang it
        out.put(("error", repr(e)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few seconds, smaller sizes")
    p.add_argument("--instances", type=int, default=None)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seconds", type=float, default=None, help="per phase")
    p.add_argument("--rt-instances", type=int, default=None)
    p.add_argument("--rt-per-instance", type=int, default=None)
    p.add_argument("--rt-rounds", type=int, default=None)
    p.add_argument(
        "--loader",
        choices=("wrk", "python"),
        default="wrk" if shutil.which("wrk") else "python",
        help="send-event and get load generator (default: wrk when on the PATH)",
    )
    a = p.parse_args()
    q = a.quick
    n = a.instances or (20 if q else 200)
    seconds = a.seconds or (1.0 if q else 10.0)
    rt_i = min(n, a.rt_instances or (10 if q else 100))
    rt_s = a.rt_per_instance or (5 if q else 10)
    rt_rounds = a.rt_rounds or (3 if q else 20)

    sys.path.insert(0, str(ROOT))
    import httpx

    from tests.server.test_e2e import Server

    with tempfile.TemporaryDirectory(prefix="backstate-http-bench-") as tmp:
        t0 = time.perf_counter()
        server = Server(Path(tmp))
        noop, noop_url = _noop_server()
        try:
            print(f"server up in {time.perf_counter() - t0:.1f}s at {server.url}", flush=True)
            names = [f"bench-{i}" for i in range(n)]
            tokens = {name: server.token({"sid": name}, ttl=3600) for name in names}
            with httpx.Client(base_url=server.url, timeout=30) as c:
                for name in names:
                    r = c.post(
                        "/machines/toggler",
                        json={"slug": name},
                        headers={"authorization": f"Bearer {tokens[name]}"},
                    )
                    if r.status_code != 200:
                        print(f"create {name}: {r.status_code} {r.text}", file=sys.stderr)
                        return 1
            ctx = mp.get_context("spawn")
            out = ctx.Queue()
            proc = ctx.Process(
                target=_load,
                args=(
                    {
                        "url": server.url,
                        "noop_url": noop_url,
                        "port": server.port,
                        "names": names,
                        "tokens": tokens,
                        "concurrency": a.concurrency,
                        "seconds": seconds,
                        "warmup": 0.3 if q else 2.0,
                        "rt_instances": rt_i,
                        "rt_per_instance": rt_s,
                        "rt_rounds": rt_rounds,
                        "wrk": a.loader == "wrk",
                        "folder": Path(tmp),
                    },
                    out,
                ),
            )
            proc.start()
            status, res = out.get(timeout=600)
            proc.join(30)
        finally:
            noop.kill()
            noop.wait()
            server.stop()
    if status != "ok":
        print(f"load generator failed: {res}", file=sys.stderr)
        return 1

    ms = 1000.0
    print()
    print(
        f"backstate serve (toggler, SQLite) vs load generator in a separate process; "
        f"{os.cpu_count()} CPUs shared by both; Python {platform.python_version()}"
    )
    print(
        f"load generator: {'wrk (C)' if a.loader == 'wrk' else 'Python (httpx)'}; "
        f"{n} instances, {min(a.concurrency, n)} keep-alive connections, {seconds:g}s per phase; "
        f"/rt: {rt_i} instances x {rt_s} subscribers, {rt_rounds} rounds"
    )
    print()
    print(f"{'phase':<26}{'requests':>10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for phase, label in (("send", "send-event"), ("get", "get"), ("noop", "peer: no-op uvicorn")):
        r = res[phase]
        print(
            f"{label:<26}{r['n']:>10,}{r['n'] / r['elapsed']:>10,.0f}"
            f"{r['p50'] * ms:>10.2f}{r['p99'] * ms:>10.2f}{r['errors']:>8}"
        )
    rt = res["rt"]
    print(
        f"{'/rt update after response':<26}{rt['n']:>10,}{'':>10}"
        f"{_pct(rt['lat'], 50) * ms:>10.2f}{_pct(rt['lat'], 99) * ms:>10.2f}"
        f"{rt['errors'] + rt['missing']:>8}"
    )
    print(
        f"{'/rt update after request':<26}{rt['n']:>10,}{'':>10}"
        f"{_pct(rt['lat_req'], 50) * ms:>10.2f}{_pct(rt['lat_req'], 99) * ms:>10.2f}"
        f"{rt['errors'] + rt['missing']:>8}"
    )
    print(f"/rt subscribers: {rt['subs']}, updates missing: {rt['missing']}")
    send = res["send"]
    rps = send["n"] / send["elapsed"]
    peer = res["noop"]["n"] / res["noop"]["elapsed"]
    print(
        f"send-event / no-op uvicorn app: {rps / peer:.2f} "
        f"(the peer is what uvicorn itself allows on this machine)"
    )
    p99 = send["p99"] * ms
    ok = rps >= BAR_RPS and p99 < BAR_P99_MS
    print()
    print(
        f"bar: >= {BAR_RPS:,.0f} send-event/s with p99 < {BAR_P99_MS:g} ms: "
        f"{'PASS' if ok else 'FAIL'} ({rps:,.0f}/s, p99 {p99:.1f} ms; "
        f"server and load generator share {os.cpu_count()} cores)"
    )
    bad = (
        send["errors"]
        or res["get"]["errors"]
        or res["noop"]["errors"]
        or rt["errors"]
        or rt["missing"]
    )
    return 1 if bad or not send["n"] or not rt["n"] else 0


if __name__ == "__main__":
    sys.exit(main())
