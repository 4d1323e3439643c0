"""HTTP and /rt throughput of a real ``backstate serve`` process, against its peers.

Starts the server the way ``tests/server/test_e2e.py`` does (its ``Server`` class, the
toggler example deployed, SQLite in a temporary directory) as it runs by default, with
machine code in sandboxed workers (``--workers-per-org`` passed on), and a second one
with ``--trusted``; creates N toggler instances in each, then runs the load generator in
a separate process (multiprocessing, ``spawn``):

* send-event: ``POST /machines/toggler/i/{name}/events`` ``{"event": "toggle"}`` over C
  HTTP/1.1 keep-alive connections, cycling through the instances, against the sandboxed
  server (the bar judges this phase). The load generator is
  ``wrk`` (C): a Python client needs more CPU per request than the server and, on two
  cores, measures itself. Without wrk on the PATH it is installed from Debian's packages
  into ``benchmarks/.wrk/`` (``apt-get download``, unpacked, git-ignored). With
  ``--loader python``: C asyncio workers over httpx, each owning a disjoint slice of the
  instances;
* peer, ``--trusted``: the same send-event load against the trusted server, right
  after; send-event is printed as a ratio of it (what sandboxing costs);
* get: ``GET /machines/toggler/i/{name}``, same shape (sandboxed: ``allow_read`` runs
  in a worker);
* peer, Restate (``restate_peer.py``): the same load, one request per key in turn over
  the same keys and connections, against the Restate server's ingress, as
  ``POST /counter/{key}/add`` ``1`` to a Virtual Object whose exclusive handler adds to
  its durable state (``restate_counter.py``, Restate's Python SDK on hypercorn): what a
  user would run instead of backstate for keyed durable state over HTTP. It runs right
  after send-event and is verified afterwards (the objects' counts add up to the adds
  answered); send-event is printed as a ratio of it;
* peer, no-op uvicorn: the same send-event load against a no-op ASGI app on uvicorn with
  ``serve``'s settings (httptools, uvloop, no access log), started by this run: what
  uvicorn and the machine allow at best, so send-event is also printed as a ratio of it;
* /rt: S WebSocket subscribers (``subscribe-to-instance``) spread over I instances; in
  each round one event is sent to every one of the I instances; the latency is the time
  from the send-event's HTTP response to each subscriber's ``instance-update``.

Usage::

    .venv/bin/python benchmarks/serve_http.py            # full run (about a minute)
    .venv/bin/python benchmarks/serve_http.py --quick    # smoke run (several seconds)

The servers and the load generator share the machine's cores; the numbers are a lower
bound for the server alone. Exits 1 on any non-200 response, a missing /rt update, or a
peer that fails to start, to answer or to verify, naming it (``--skip-restate`` leaves
Restate out).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import restate_peer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WRK_DIR = HERE / ".wrk"
WRK_DEBS = ("wrk", "libluajit-5.1-2")

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


def _wrk_program() -> tuple[list[str], dict[str, str]]:
    """wrk's command and environment: the one on the PATH, else Debian's package
    unpacked into ``benchmarks/.wrk/`` (with the LuaJIT it links), once."""
    found = shutil.which("wrk")
    if found:
        return [found], {}
    done = WRK_DIR / ".complete"
    if not done.exists():
        shutil.rmtree(WRK_DIR, ignore_errors=True)
        with tempfile.TemporaryDirectory(prefix="backstate-wrk-") as debs:
            cmd = ["apt-get", "download", *WRK_DEBS]
            proc = subprocess.run(cmd, cwd=debs, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()[-300:]}")
            for deb in sorted(Path(debs).glob("*.deb")):
                subprocess.run(["dpkg-deb", "-x", str(deb), str(WRK_DIR)], check=True)
        done.touch()
    libs = sorted({str(p.parent) for p in WRK_DIR.glob("usr/lib/*/libluajit-5.1.so.2")})
    return [str(WRK_DIR / "usr/bin/wrk")], {"LD_LIBRARY_PATH": os.pathsep.join(libs)}


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


@dataclass(frozen=True)
class Load:
    """One phase's requests: the i-th goes to ``paths[i % len(paths)]``, with the
    bearer token of the same index if there are tokens, and ``body`` (JSON) if any."""

    method: str
    paths: list[str]
    body: str | None = None
    tokens: list[str] | None = None


def backstate_load(method: str, names: list[str], tokens: dict[str, str]) -> Load:
    if method == "send":
        paths = [f"/machines/toggler/i/{n}/events" for n in names]
        return Load("POST", paths, '{"event":"toggle"}', [tokens[n] for n in names])
    return Load(
        "GET", [f"/machines/toggler/i/{n}" for n in names], None, [tokens[n] for n in names]
    )


def restate_load(names: list[str]) -> Load:
    return Load("POST", [restate_peer.ADD_PATH.format(key=n) for n in names], "1")


def _wrk(
    url: str,
    load: Load,
    seconds: float,
    concurrency: int,
    script: Path,
    program: tuple[list[str], dict[str, str]],
    enter: list[str],
) -> dict[str, Any]:
    """One phase with wrk (one thread, ``concurrency`` keep-alive connections), started
    after ``enter`` (a command prefix: a network namespace) if any."""
    headers = []
    if load.body is not None:
        headers.append('["Content-Type"]="application/json"')
    if load.tokens is not None:
        headers.append('["Authorization"]="Bearer " .. tokens[k]')
    body = json.dumps(load.body) if load.body is not None else "nil"
    script.write_text(
        "paths = {" + ",".join(json.dumps(p) for p in load.paths) + "}\n"
        "tokens = {" + ",".join(json.dumps(t) for t in load.tokens or []) + "}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i + 1\n"
        "  local k = (i % #paths) + 1\n"
        f"  return wrk.format({json.dumps(load.method)}, paths[k], {{{', '.join(headers)}}}, {body})\n"
        "end\n"
    )
    command, env = program
    out = subprocess.run(
        [
            *enter,
            *command,
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
        env={**os.environ, **env},
    ).stdout
    done = re.search(r"(\d+) requests in ([\d.]+(?:us|ms|s|m))", out)
    assert done, out
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = int(bad.group(1)) if bad else 0
    # A response slower than wrk's timeout (2 s) is counted as a request and a timeout.
    errors = non_2xx + (sum(int(g) for g in sock.groups()) if sock else 0)
    pcts = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.MULTILINE))
    return {
        "n": int(done.group(1)) - errors,
        "answered": int(done.group(1)) - non_2xx,
        "errors": errors,
        "elapsed": _wrk_seconds(done.group(2)),
        "p50": _wrk_seconds(pcts["50"]),
        "p99": _wrk_seconds(pcts["99"]),
    }


async def _closed_loop(url: str, load: Load, seconds: float, concurrency: int) -> dict[str, Any]:
    import httpx

    keys = list(range(len(load.paths)))
    conc = min(concurrency, len(keys))
    lat: list[float] = []
    errors = 0
    # One client (one keep-alive connection) per worker: httpcore's pool scans all of its
    # connections on every request, which makes one 64-connection pool the bottleneck.
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(base_url=url, limits=one, timeout=30) for _ in range(conc)]
    content = load.body.encode() if load.body is not None else None
    headers: list[dict[str, str]] = []
    for k in keys:
        h = {"content-type": "application/json"} if content is not None else {}
        if load.tokens is not None:
            h["authorization"] = f"Bearer {load.tokens[k]}"
        headers.append(h)
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient, mine: list[int]) -> None:
        nonlocal errors
        i = 0
        while True:
            k = mine[i % len(mine)]
            i += 1
            t0 = time.perf_counter()
            if t0 >= deadline:
                return
            r = await client.request(
                load.method, load.paths[k], content=content, headers=headers[k]
            )
            t1 = time.perf_counter()
            if r.status_code != 200:
                errors += 1
            else:
                lat.append(t1 - t0)

    start = time.perf_counter()
    await asyncio.gather(*(worker(clients[k], keys[k::conc]) for k in range(conc)))
    elapsed = time.perf_counter() - start
    await asyncio.gather(*(c.aclose() for c in clients))
    return {
        "n": len(lat),
        "answered": len(lat),
        "errors": errors,
        "elapsed": elapsed,
        "p50": _pct(lat, 50),
        "p99": _pct(lat, 99),
    }


def _closed_loop_inside(
    url: str, load: Load, seconds: float, concurrency: int, folder: Path, enter: list[str]
) -> dict[str, Any]:
    """``_closed_loop`` in a process started after ``enter`` (in a network namespace)."""
    spec = folder / "closed-loop.json"
    spec.write_text(
        json.dumps(
            {"url": url, "load": load.__dict__, "seconds": seconds, "concurrency": concurrency}
        )
    )
    out = subprocess.run(
        [*enter, sys.executable, str(Path(__file__).resolve()), "--closed-loop", str(spec)],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def _phase(
    url: str, load: Load, seconds: float, args: dict[str, Any], name: str, enter: list[str]
) -> dict[str, Any]:
    if args["wrk"] is not None:
        script = args["folder"] / f"{name}.lua"
        return _wrk(url, load, seconds, args["concurrency"], script, args["wrk"], enter)
    if enter:
        return _closed_loop_inside(url, load, seconds, args["concurrency"], args["folder"], enter)
    return asyncio.run(_closed_loop(url, load, seconds, args["concurrency"]))


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
    """The load generator's process: the phases in order, then /rt."""
    try:
        names, tokens = args["names"], args["tokens"]
        send = backstate_load("send", names, tokens)
        phases: list[tuple[str, str, Load, float, list[str]]] = [
            ("warm-up", args["url"], send, args["warmup"], []),
            ("send", args["url"], send, args["seconds"], []),
        ]
        if args["trusted_url"] is not None:
            trusted = backstate_load("send", names, args["trusted_tokens"])
            url = args["trusted_url"]
            phases.append(("trusted-warm-up", url, trusted, args["warmup"], []))
            phases.append(("trusted", url, trusted, args["seconds"], []))
        if args["restate_enter"] is not None:
            add = restate_load(names)
            enter = args["restate_enter"]
            phases.append(("restate-warm-up", restate_peer.INGRESS, add, args["warmup"], enter))
            phases.append(("restate", restate_peer.INGRESS, add, args["seconds"], enter))
        phases.append(
            ("get", args["url"], backstate_load("get", names, tokens), args["seconds"], [])
        )
        phases.append(("noop", args["noop_url"], send, args["seconds"], []))
        res: dict[str, Any] = {}
        for name, url, load, seconds, enter in phases:
            res[name] = _phase(url, load, seconds, args, name, enter)
        res["rt"] = asyncio.run(
            _realtime(
                args["url"],
                args["port"],
                names[: args["rt_instances"]],
                tokens,
                args["rt_per_instance"],
                args["rt_rounds"],
                args["concurrency"],
            )
        )
        out.put(("ok", res))
    except BaseException as e:  # report to the parent, never hang it
        detail = getattr(e, "stderr", None) or ""
        out.put(("error", f"{e!r} {detail}".strip()))


def _start_restate(skip: bool) -> tuple[restate_peer.RestatePeer | None, str | None]:
    """The Restate peer, or why there is none."""
    if skip:
        return None, None
    print("starting Restate (installed on first use) ...", flush=True)
    try:
        return restate_peer.RestatePeer(), None
    except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as e:
        return None, str(e)


def _start_server(folder: Path, options: tuple[str, ...]) -> tuple[Any, str | None]:
    """A ``backstate serve`` (``tests/server/test_e2e.py``'s ``Server``) in ``folder``,
    or why it did not start."""
    from tests.server.test_e2e import Server

    folder.mkdir()
    try:
        return Server(folder, options=options), None
    except RuntimeError as e:
        lines = [line for line in str(e).splitlines() if line.strip()]
        return None, lines[-1][-300:] if lines else "it did not start"


def _create(server: Any, names: list[str]) -> tuple[dict[str, str], str | None]:
    """One toggler instance per name, each with its own token (``sid`` = its name, so
    the toggler's authorizers pass): the tokens, or what went wrong."""
    import httpx

    tokens = {name: server.token({"sid": name}, ttl=3600) for name in names}
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for name in names:
            r = c.post(
                "/machines/toggler",
                json={"slug": name},
                headers={"authorization": f"Bearer {tokens[name]}"},
            )
            if r.status_code != 200:
                return tokens, f"create {name}: {r.status_code} {r.text[:200]}"
    return tokens, None


def _row(label: str, r: dict[str, Any]) -> str:
    ms = 1000.0
    return (
        f"{label:<30}{r['n']:>10,}{r['n'] / r['elapsed']:>10,.0f}"
        f"{r['p50'] * ms:>10.2f}{r['p99'] * ms:>10.2f}{r['errors']:>8}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few seconds, smaller sizes")
    p.add_argument("--instances", type=int, default=None, help="instances (and Restate keys)")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seconds", type=float, default=None, help="per phase")
    p.add_argument("--rt-instances", type=int, default=None)
    p.add_argument("--rt-per-instance", type=int, default=None)
    p.add_argument("--rt-rounds", type=int, default=None)
    p.add_argument(
        "--loader",
        choices=("wrk", "python"),
        default="wrk",
        help="send-event, get and peer load generator (default wrk, installed if missing)",
    )
    p.add_argument("--skip-restate", action="store_true", help="leave the Restate peer out")
    p.add_argument(
        "--workers-per-org",
        type=int,
        default=1,
        help="the sandboxed server's --workers-per-org (default 1, serve's default)",
    )
    p.add_argument("--closed-loop", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.closed_loop:  # a phase of the Python load generator, in Restate's namespace
        spec = json.loads(Path(a.closed_loop).read_text())
        load = Load(**spec["load"])
        result = asyncio.run(_closed_loop(spec["url"], load, spec["seconds"], spec["concurrency"]))
        print(json.dumps(result))
        return 0
    q = a.quick
    n = a.instances or (20 if q else 200)
    seconds = a.seconds or (1.0 if q else 10.0)
    rt_i = min(n, a.rt_instances or (10 if q else 100))
    rt_s = a.rt_per_instance or (5 if q else 10)
    rt_rounds = a.rt_rounds or (3 if q else 20)
    conc = min(a.concurrency, n)  # connections: no more than instances, as each takes turns
    try:
        wrk = _wrk_program() if a.loader == "wrk" else None
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        print(f"FAILED: wrk could not be installed ({e}); --loader python uses no wrk")
        return 1

    sys.path.insert(0, str(ROOT))
    sandboxed_options = ("--workers-per-org", str(a.workers_per_org))
    restate: restate_peer.RestatePeer | None = None
    restate_error: str | None = None
    trusted_error: str | None = None
    with tempfile.TemporaryDirectory(prefix="backstate-http-bench-") as tmp:
        t0 = time.perf_counter()
        # The subject, backstate serve as it runs by default (machine code in sandboxed
        # workers), and the same server with --trusted (machine code in its process).
        server, error = _start_server(Path(tmp) / "sandboxed", sandboxed_options)
        if server is None:
            print(f"FAILED: backstate serve (sandboxed) did not start: {error}")
            return 1
        trusted, trusted_error = _start_server(Path(tmp) / "trusted", ("--trusted",))
        noop, noop_url = _noop_server()
        try:
            print(f"servers up in {time.perf_counter() - t0:.1f}s at {server.url}", flush=True)
            names = [f"bench-{i}" for i in range(n)]
            tokens, error = _create(server, names)
            if error is not None:
                print(f"FAILED: backstate serve (sandboxed): {error}")
                return 1
            trusted_tokens: dict[str, str] = {}
            if trusted is not None:
                trusted_tokens, trusted_error = _create(trusted, names)
            trusted_url = trusted.url if trusted is not None and trusted_error is None else None
            restate, restate_error = _start_restate(a.skip_restate)
            ctx = mp.get_context("spawn")
            out = ctx.Queue()
            proc = ctx.Process(
                target=_load,
                args=(
                    {
                        "url": server.url,
                        "trusted_url": trusted_url,
                        "trusted_tokens": trusted_tokens,
                        "noop_url": noop_url,
                        "restate_enter": restate.enter if restate else None,
                        "port": server.port,
                        "names": names,
                        "tokens": tokens,
                        "concurrency": conc,
                        "seconds": seconds,
                        "warmup": 0.3 if q else 2.0,
                        "rt_instances": rt_i,
                        "rt_per_instance": rt_s,
                        "rt_rounds": rt_rounds,
                        "wrk": wrk,
                        "folder": Path(tmp),
                    },
                    out,
                ),
            )
            proc.start()
            status, res = out.get(timeout=900)
            proc.join(30)
            restate_total = None
            if restate is not None and status == "ok":
                try:
                    restate_total = restate.total(names)
                except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                    restate_error = f"summing the counts: {e}"
        finally:
            if restate is not None:
                restate.stop()
            noop.kill()
            noop.wait()
            if trusted is not None:
                trusted.stop()
            server.stop()
    if status != "ok":
        print(f"FAILED: load generator: {res}")
        return 1

    ms = 1000.0
    print()
    print(
        f"backstate serve (toggler, SQLite; machine code in sandboxed workers,"
        f" --workers-per-org {a.workers_per_org}; peer: the same with --trusted) vs load"
        f" generator in a separate process; {os.cpu_count()} CPUs shared by all;"
        f" Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"load generator: {'wrk (C)' if wrk else 'Python (httpx)'}; "
        f"{n} instances, {conc} keep-alive connections, {seconds:g}s per phase; "
        f"/rt: {rt_i} instances x {rt_s} subscribers, {rt_rounds} rounds"
    )
    if restate is not None:
        i = restate.info
        print(
            f"Restate: {i['server']}, {i['sdk']} on hypercorn (uvloop, 1 worker), Virtual Object"
            f" 'counter'; its namespace listens on {', '.join(i['listening'])} only"
        )
    print()
    print(f"{'phase':<30}{'requests':>10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    print(_row("send-event", res["send"]))
    if "trusted" in res:
        print(_row("peer: send-event, --trusted", res["trusted"]))
    else:
        print(f"{'peer: send-event, --trusted':<30}failed: {trusted_error}")
    print(_row("get", res["get"]))
    if "restate" in res:
        print(_row("peer: Restate counter/add", res["restate"]))
    else:
        why = "skipped (--skip-restate)" if a.skip_restate else f"failed: {restate_error}"
        print(f"{'peer: Restate counter/add':<30}{why}")
    print(_row("peer: no-op uvicorn", res["noop"]))
    rt = res["rt"]
    for label, key in (
        ("/rt update after response", "lat"),
        ("/rt update after request", "lat_req"),
    ):
        print(
            f"{label:<30}{rt['n']:>10,}{'':>10}"
            f"{_pct(rt[key], 50) * ms:>10.2f}{_pct(rt[key], 99) * ms:>10.2f}"
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
    failed = []
    if "trusted" in res:
        t = res["trusted"]
        print(
            f"send-event / --trusted: {rps / (t['n'] / t['elapsed']):.2f} "
            f"(the same server and load, machine code in sandboxed workers / in its process)"
        )
    else:
        failed.append(f"peer backstate serve --trusted: {trusted_error}")
    restate_verified = False
    if "restate" in res:
        adds = res["restate-warm-up"]["answered"] + res["restate"]["answered"]
        # Requests still in flight when a phase stops may be applied without being counted.
        slack = 2 * conc
        restate_verified = restate_total is not None and adds <= restate_total <= adds + slack
        r = res["restate"]
        print(
            f"send-event / Restate counter/add: {rps / (r['n'] / r['elapsed']):.2f} "
            f"(one durable, keyed state change per request in both)"
        )
        print(
            f"Restate: {adds:,} adds answered, the objects' counts sum to"
            f" {'n/a' if restate_total is None else f'{restate_total:,}'}"
            f" (at most {slack} more: in flight at a phase's end): verified={restate_verified}"
        )
        if not restate_verified:
            why = restate_error or f"counts sum to {restate_total} for {adds} adds"
            failed.append(f"peer Restate: not verified: {why}")
    elif not a.skip_restate:
        failed.append(f"peer Restate: {restate_error}")
    p99 = send["p99"] * ms
    ok = rps >= BAR_RPS and p99 < BAR_P99_MS
    print()
    print(
        f"bar: >= {BAR_RPS:,.0f} send-event/s with p99 < {BAR_P99_MS:g} ms, sandboxed: "
        f"{'PASS' if ok else 'FAIL'} ({rps:,.0f}/s, p99 {p99:.1f} ms; "
        f"servers and load generator share {os.cpu_count()} cores)"
    )
    for phase, label in (
        ("send", "send-event"),
        ("trusted", "peer send-event, --trusted"),
        ("get", "get"),
        ("restate", "peer Restate"),
        ("noop", "peer no-op uvicorn"),
    ):
        if phase in res and (res[phase]["errors"] or not res[phase]["n"]):
            failed.append(f"{label}: {res[phase]['errors']} errors, {res[phase]['n']} answered")
    if rt["errors"] or rt["missing"] or not rt["n"]:
        failed.append(f"/rt: {rt['errors']} errors, {rt['missing']} updates missing")
    if failed:
        print("FAILED:", *failed, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
