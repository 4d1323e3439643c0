"""Events per second of backstate.chart against Python statechart libraries and XState v5.

Three machines, each built equivalently in every engine:

* ``flat``: two states ``a <-> b`` on event ``T``;
* ``deep``: two 4-deep branches ``a1 > a2 > a3 > a4`` and ``b1 > b2 > b3 > b4``; ``T``
  toggles between the leaves ``a4`` and ``b4``, so every event exits 4 states and enters
  4, each with a custom entry and exit action, and the transition assigns ``count + 1``;
* ``parallel``: 4 regions ``r1..r4``, each toggling ``xN <-> yN`` on the same ``T`` (4
  transitions per event).

Usage::

    .venv/bin/python benchmarks/engine.py               # full run (a few minutes)
    .venv/bin/python benchmarks/engine.py --quick       # smoke run
    .venv/bin/python benchmarks/engine.py --only backstate,sismic

Python peers run in this process; XState runs as a Node subprocess
(``benchmarks/engine_xstate.mjs``), installed on first use into ``benchmarks/.node/``.
Exits 1 if an engine that was asked for (``--only``; all by default) could not be
measured or gave a wrong result, naming it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / ".node"
MACHINES = ("flat", "deep", "parallel")
PY_ENGINES = ("backstate", "transitions", "python-statemachine", "sismic")
ENGINES = (*PY_ENGINES, "xstate")
EVENT: dict[str, Any] = {"type": "T"}
REGIONS = 4
DEPTH = 4


# --------------------------------------------------------------------------- machines
# XState v5 JSON configs, shared verbatim by backstate and XState (engine_xstate.mjs gets
# them on stdin), so those two run exactly the same chart.


def _deep_branch(prefix: str, other: str) -> dict[str, Any]:
    leaf = f"{prefix}{DEPTH}"
    node: dict[str, Any] = {
        "id": leaf,
        "entry": ["hit"],
        "exit": ["hit"],
        "on": {"T": {"target": f"#{other}{DEPTH}", "actions": ["inc"]}},
    }
    name = leaf
    for level in range(DEPTH - 1, 0, -1):
        node = {"entry": ["hit"], "exit": ["hit"], "initial": name, "states": {name: node}}
        name = f"{prefix}{level}"
    return node


CONFIGS: dict[str, dict[str, Any]] = {
    "flat": {
        "id": "flat",
        "initial": "a",
        "states": {"a": {"on": {"T": "b"}}, "b": {"on": {"T": "a"}}},
    },
    "deep": {
        "id": "deep",
        "initial": "a1",
        "context": {"count": 0},
        "states": {"a1": _deep_branch("a", "b"), "b1": _deep_branch("b", "a")},
    },
    "parallel": {
        "id": "par",
        "type": "parallel",
        "states": {
            f"r{i}": {
                "initial": f"x{i}",
                "states": {f"x{i}": {"on": {"T": f"y{i}"}}, f"y{i}": {"on": {"T": f"x{i}"}}},
            }
            for i in range(1, REGIONS + 1)
        },
    },
}

LEAVES: dict[str, frozenset[str]] = {
    "flat": frozenset({"a", "b"}),
    "deep": frozenset({f"a{DEPTH}", f"b{DEPTH}"}),
    "parallel": frozenset(f"{s}{i}" for s in "xy" for i in range(1, REGIONS + 1)),
}


def expected_leaves(machine: str, sent: int) -> list[str]:
    """Active leaves after `sent` events from the initial state."""
    odd = sent % 2 == 1
    if machine == "flat":
        return ["b" if odd else "a"]
    if machine == "deep":
        return [f"{'b' if odd else 'a'}{DEPTH}"]
    return sorted(f"{'y' if odd else 'x'}{i}" for i in range(1, REGIONS + 1))


def value_leaves(value: Any) -> list[str]:
    """Leaf names of an XState-shaped state value."""
    if isinstance(value, str):
        return [value]
    return sorted(leaf for child in value.values() for leaf in value_leaves(child))


# --------------------------------------------------------------------------- engines


@dataclass
class Case:
    """One machine in one engine: ``run(n)`` sends ``n`` events; ``probe()`` reports the
    active leaves and the deep machine's counter (or None) so the run can be verified."""

    run: Callable[[int], None]
    probe: Callable[[], tuple[list[str], int | None]]
    sent: int = 0

    def send(self, n: int) -> None:
        self.run(n)
        self.sent += n


def backstate_case(machine: str) -> Case:
    from backstate.chart import assign, setup

    def hit(context: Any, event: Any) -> None:  # an effect: transition() never calls it
        pass

    actions = {"hit": hit, "inc": assign({"count": lambda c, e: c["count"] + 1})}
    chart = setup(actions=actions).create_machine(CONFIGS[machine])
    snap, _ = chart.initial_transition()
    holder = [snap]
    step = chart.transition

    def run(n: int) -> None:
        s = holder[0]
        ev = EVENT
        for _ in range(n):
            s, _effects = step(s, ev)
        holder[0] = s

    def probe() -> tuple[list[str], int | None]:
        s = holder[0]
        return value_leaves(s.value), (s.context or {}).get("count")

    return Case(run, probe)


class _Model:
    """Model object for `transitions` (the library keeps the state on it)."""

    def __init__(self) -> None:
        self.hits = 0
        self.count = 0
        self.state: Any = None

    def hit(self) -> None:
        self.hits += 1

    def inc(self) -> None:
        self.count += 1


def transitions_case(machine: str) -> Case:
    from transitions import Machine
    from transitions.extensions import HierarchicalMachine

    model = _Model()
    if machine == "flat":
        Machine(
            model=model,
            states=["a", "b"],
            transitions=[["T", "a", "b"], ["T", "b", "a"]],
            initial="a",
            auto_transitions=False,
        )
    elif machine == "deep":

        def branch(p: str) -> dict[str, Any]:
            node: dict[str, Any] = {"name": f"{p}{DEPTH}", "on_enter": "hit", "on_exit": "hit"}
            for level in range(DEPTH - 1, 0, -1):
                node = {
                    "name": f"{p}{level}",
                    "on_enter": "hit",
                    "on_exit": "hit",
                    "children": [node],
                    "initial": node["name"],
                }
            return node

        path_a = "_".join(f"a{i}" for i in range(1, DEPTH + 1))
        path_b = "_".join(f"b{i}" for i in range(1, DEPTH + 1))
        HierarchicalMachine(
            model=model,
            states=[branch("a"), branch("b")],
            transitions=[
                {"trigger": "T", "source": path_a, "dest": path_b, "after": "inc"},
                {"trigger": "T", "source": path_b, "dest": path_a, "after": "inc"},
            ],
            initial="a1",
            auto_transitions=False,
        )
    else:
        regions = [
            {
                "name": f"r{i}",
                "initial": f"x{i}",
                "children": [f"x{i}", f"y{i}"],
                "transitions": [["T", f"x{i}", f"y{i}"], ["T", f"y{i}", f"x{i}"]],
            }
            for i in range(1, REGIONS + 1)
        ]
        HierarchicalMachine(
            model=model,
            states=[{"name": "p", "parallel": regions}],
            initial="p",
            auto_transitions=False,
        )
    trigger = model.T  # type: ignore[attr-defined]

    def run(n: int) -> None:
        for _ in range(n):
            trigger()

    def probe() -> tuple[list[str], int | None]:
        states = model.state if isinstance(model.state, list) else [model.state]
        found = sorted(str(s).rsplit("_", 1)[-1] for s in states)
        return found, model.count if machine == "deep" else None

    return Case(run, probe)


def python_statemachine_case(machine: str) -> Case:
    from statemachine import State, StateChart

    chart: Any
    if machine == "flat":

        class Flat(StateChart[Any]):
            a = State(initial=True)
            b = State()
            T = a.to(b) | b.to(a)

        chart = Flat()
    elif machine == "deep":
        # Written out: python-statemachine declares nesting with nested classes.
        class Deep(StateChart[Any]):
            hits = 0
            count = 0

            class a1(State.Compound, enter="hit", exit="hit"):
                class a2(State.Compound, enter="hit", exit="hit"):
                    class a3(State.Compound, enter="hit", exit="hit"):
                        a4 = State(initial=True, enter="hit", exit="hit")

            class b1(State.Compound, enter="hit", exit="hit"):
                class b2(State.Compound, enter="hit", exit="hit"):
                    class b3(State.Compound, enter="hit", exit="hit"):
                        b4 = State(initial=True, enter="hit", exit="hit")

            T = a1.a2.a3.a4.to(b1.b2.b3.b4, on="inc") | b1.b2.b3.b4.to(a1.a2.a3.a4, on="inc")

            def hit(self) -> None:
                self.hits += 1

            def inc(self) -> None:
                self.count += 1

        chart = Deep()
    else:

        class Parallel(StateChart[Any]):
            class p(State.Parallel):
                class r1(State.Compound):
                    x1 = State(initial=True)
                    y1 = State()
                    T = x1.to(y1) | y1.to(x1)

                class r2(State.Compound):
                    x2 = State(initial=True)
                    y2 = State()
                    T = x2.to(y2) | y2.to(x2)

                class r3(State.Compound):
                    x3 = State(initial=True)
                    y3 = State()
                    T = x3.to(y3) | y3.to(x3)

                class r4(State.Compound):
                    x4 = State(initial=True)
                    y4 = State()
                    T = x4.to(y4) | y4.to(x4)

        chart = Parallel()
    send = chart.send

    def run(n: int) -> None:
        for _ in range(n):
            send("T")

    def probe() -> tuple[list[str], int | None]:
        found = sorted(s.id for s in chart.configuration if s.id in LEAVES[machine])
        return found, chart.count if machine == "deep" else None

    return Case(run, probe)


def sismic_case(machine: str) -> Case:
    from sismic.interpreter import Interpreter  # type: ignore[import-untyped]
    from sismic.model import (  # type: ignore[import-untyped]
        BasicState,
        CompoundState,
        Event,
        OrthogonalState,
        Statechart,
        Transition,
    )

    # Sismic needs a single root state; actions are Python code strings (its evaluator).
    sc = Statechart(machine, preamble="hits = 0\ncount = 0")
    if machine == "flat":
        sc.add_state(CompoundState("root", initial="a"), None)
        sc.add_state(BasicState("a"), "root")
        sc.add_state(BasicState("b"), "root")
        sc.add_transition(Transition("a", "b", event="T"))
        sc.add_transition(Transition("b", "a", event="T"))
    elif machine == "deep":
        sc.add_state(CompoundState("root", initial="a1"), None)
        for p in "ab":
            parent = "root"
            for level in range(1, DEPTH):
                name = f"{p}{level}"
                sc.add_state(
                    CompoundState(
                        name, initial=f"{p}{level + 1}", on_entry="hits += 1", on_exit="hits += 1"
                    ),
                    parent,
                )
                parent = name
            sc.add_state(
                BasicState(f"{p}{DEPTH}", on_entry="hits += 1", on_exit="hits += 1"), parent
            )
        sc.add_transition(Transition(f"a{DEPTH}", f"b{DEPTH}", event="T", action="count += 1"))
        sc.add_transition(Transition(f"b{DEPTH}", f"a{DEPTH}", event="T", action="count += 1"))
    else:
        sc.add_state(OrthogonalState("p"), None)
        for i in range(1, REGIONS + 1):
            sc.add_state(CompoundState(f"r{i}", initial=f"x{i}"), "p")
            sc.add_state(BasicState(f"x{i}"), f"r{i}")
            sc.add_state(BasicState(f"y{i}"), f"r{i}")
            sc.add_transition(Transition(f"x{i}", f"y{i}", event="T"))
            sc.add_transition(Transition(f"y{i}", f"x{i}", event="T"))
    interpreter = Interpreter(sc)
    interpreter.execute_once()  # enter the initial configuration
    event = Event("T")
    queue = interpreter.queue
    execute_once = interpreter.execute_once

    def run(n: int) -> None:
        for _ in range(n):
            queue(event)
            execute_once()

    def probe() -> tuple[list[str], int | None]:
        found = sorted(s for s in interpreter.configuration if s in LEAVES[machine])
        return found, interpreter.context["count"] if machine == "deep" else None

    return Case(run, probe)


FACTORIES: dict[str, Callable[[str], Case]] = {
    "backstate": backstate_case,
    "transitions": transitions_case,
    "python-statemachine": python_statemachine_case,
    "sismic": sismic_case,
}

NOTES: dict[str, str] = {
    "backstate": "machine.transition(snapshot, event), reusing the returned snapshot; "
    "effects (the entry/exit RunActions) are returned, not run",
    "transitions": "flat: Machine; deep: HierarchicalMachine (on_enter/on_exit, after=inc); "
    "parallel: HierarchicalMachine 'parallel' state (under a parent state 'p')",
    "python-statemachine": "StateChart with State.Compound / State.Parallel; "
    "enter/exit callbacks and on=inc run",
    "sismic": "Interpreter.queue + execute_once; single root state; actions are Python "
    "code strings run by its evaluator",
    "xstate": "Node subprocess; pure = transition(machine, snapshot, event) (actions "
    "returned, not run), actor = createActor(machine).send(event) (actions run)",
}


# --------------------------------------------------------------------------- timing


def measure(run: Callable[[int], None], target_s: float, repeats: int) -> float:
    """Best-of-`repeats` rate (calls/s) of `run(n)`, with n sized for ~target_s per run.

    Doubling n until a run takes >= 10% of the target doubles as the warm-up."""
    n = 64
    while True:
        t0 = time.perf_counter()
        run(n)
        dt = time.perf_counter() - t0
        if dt >= target_s * 0.1:
            break
        n *= 2
    n = max(1, round(n * target_s / max(dt, 1e-9)))
    best = 0.0
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        run(n)
        best = max(best, n / (time.perf_counter() - t0))
    return best


@dataclass
class Results:
    eps: dict[str, dict[str, float]] = field(default_factory=dict)  # engine -> machine -> ev/s
    na: dict[str, dict[str, str]] = field(default_factory=dict)  # engine -> machine -> reason
    xstate: dict[str, Any] | None = None
    xstate_error: str | None = None
    machines_per_s: float | None = None
    snapshot_bytes: dict[str, tuple[int, int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def _who(engine: str) -> str:
    return engine if engine == "backstate" else f"peer {engine}"


def bench_python(engine: str, target_s: float, repeats: int, res: Results) -> None:
    factory = FACTORIES[engine]
    res.eps[engine] = {}
    res.na[engine] = {}
    for machine in MACHINES:
        try:
            case = factory(machine)
            rate = measure(case.send, target_s, repeats)
        except ImportError as exc:
            res.na[engine] = {m: f"cannot import ({exc})" for m in MACHINES}
            res.failures.append(f"{_who(engine)}: cannot import ({exc})")
            return
        except Exception as exc:
            res.na[engine][machine] = f"error: {type(exc).__name__}: {exc}"
            res.failures.append(f"{_who(engine)}/{machine}: {type(exc).__name__}: {exc}")
            continue
        leaves, count = case.probe()
        want = expected_leaves(machine, case.sent)
        want_count = case.sent if machine == "deep" else None
        if leaves != want or count != want_count:
            msg = f"wrong result: {leaves} count={count}, expected {want} count={want_count}"
            res.na[engine][machine] = msg
            res.failures.append(f"{_who(engine)}/{machine}: {msg}")
            continue
        res.eps[engine][machine] = rate


def bench_backstate_extras(target_s: float, repeats: int, res: Results) -> None:
    from backstate.chart import assign, setup

    def hit(context: Any, event: Any) -> None:
        pass

    def build(n: int) -> None:
        config = CONFIGS["deep"]
        for _ in range(n):
            actions = {"hit": hit, "inc": assign({"count": lambda c, e: c["count"] + 1})}
            setup(actions=actions).create_machine(config)

    res.machines_per_s = measure(build, target_s, repeats)
    for machine in MACHINES:
        actions = {"hit": hit, "inc": assign({"count": lambda c, e: c["count"] + 1})}
        chart = setup(actions=actions).create_machine(CONFIGS[machine])
        snap, _ = chart.initial_transition()
        snap, _ = chart.transition(snap, EVENT)
        data = snap.to_json()
        res.snapshot_bytes[machine] = (
            len(json.dumps(data)),
            len(json.dumps(data, separators=(",", ":"))),
        )


def ensure_xstate() -> str:
    """Path of node, installing xstate@5 into benchmarks/.node if needed."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None:
        raise RuntimeError("node not found on PATH")
    if not (NODE_DIR / "node_modules" / "xstate" / "package.json").exists():
        if npm is None:
            raise RuntimeError("npm not found on PATH")
        NODE_DIR.mkdir(exist_ok=True)
        subprocess.run(
            [
                npm,
                "install",
                "--silent",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(NODE_DIR),
                "xstate@5",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return node


def bench_xstate(target_s: float, repeats: int, res: Results) -> None:
    try:
        node = ensure_xstate()
        spec = {"configs": CONFIGS, "event": EVENT, "target_s": target_s, "repeats": repeats}
        proc = subprocess.run(
            [node, str(HERE / "engine_xstate.mjs")],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed")
        out: dict[str, Any] = json.loads(proc.stdout)
    except (RuntimeError, OSError, subprocess.CalledProcessError, ValueError) as exc:
        res.xstate_error = str(exc)
        res.failures.append(f"peer xstate: {exc}")
        return
    for variant, checks in out["checks"].items():
        for machine, got in checks.items():
            want = expected_leaves(machine, got["sent"])
            want_count = got["sent"] if machine == "deep" else None
            if got["leaves"] != want or got["count"] != want_count:
                res.failures.append(f"peer xstate {variant}/{machine}: wrong result {got}")
                out["eps"][variant].pop(machine, None)
    res.xstate = out


# --------------------------------------------------------------------------- output


def fmt_rate(rate: float) -> str:
    return f"{rate:,.0f}"


def print_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    rows = [list(r) for r in rows]
    try:
        from rich.console import Console  # type: ignore[import-not-found,unused-ignore]
        from rich.table import Table  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        line = "  ".join("-" * w for w in widths)
        if title:
            print(f"\n{title}")
        print(
            "  ".join(
                h.ljust(w) if i == 0 else h.rjust(w)
                for i, (h, w) in enumerate(zip(headers, widths, strict=True))
            )
        )
        print(line)
        for r in rows:
            print(
                "  ".join(
                    c.ljust(w) if i == 0 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(r, widths, strict=True))
                )
            )
        return
    table = Table(title=title or None)
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*r)
    Console().print(table)


def xstate_baseline(res: Results, machine: str) -> tuple[str, float] | None:
    if res.xstate is None:
        return None
    options = [(v, r[machine]) for v, r in res.xstate["eps"].items() if machine in r]
    return max(options, key=lambda o: o[1]) if options else None


def report(res: Results, engines: Sequence[str]) -> None:
    bs = res.eps.get("backstate", {})
    headers = ["machine"]
    for engine in engines:
        headers.append(f"{engine} ev/s" if engine != "backstate" else "backstate ev/s")
        if engine != "backstate" and "backstate" in engines:
            headers.append("bs/x")
    rows = []
    for machine in MACHINES:
        row = [machine]
        for engine in engines:
            if engine == "xstate":
                base = xstate_baseline(res, machine)
                rate = base[1] if base else None
                cell = f"{fmt_rate(base[1])} ({base[0]})" if base else "n/a"
            else:
                rate = res.eps.get(engine, {}).get(machine)
                cell = fmt_rate(rate) if rate else "n/a"
            row.append(cell)
            if engine != "backstate" and "backstate" in engines:
                ours = bs.get(machine)
                row.append(f"{ours / rate:.2f}" if ours and rate else "-")
        rows.append(row)
    print_table(
        "events/second (best of N; bs/x = backstate/engine, >= 1.0 means backstate is faster)",
        headers,
        rows,
    )
    for engine in engines:
        for machine, why in res.na.get(engine, {}).items():
            print(f"  n/a {engine}/{machine}: {why}")
    if "xstate" in engines:
        if res.xstate is None:
            print(f"  n/a xstate: {res.xstate_error}")
        else:
            x = res.xstate
            print_table(
                f"XState {x['version']} variants, ev/s (the faster one is the baseline above)",
                ["machine", *(f"xstate {v}" for v in x["eps"])],
                [[m, *(fmt_rate(x["eps"][v].get(m, 0.0)) for v in x["eps"])] for m in MACHINES],
            )
    if res.machines_per_s is not None:
        print(
            f"\nbackstate machines constructed/s (setup().create_machine, deep): {fmt_rate(res.machines_per_s)}"
        )
        if res.xstate is not None:
            print(
                f"xstate    machines constructed/s (setup().createMachine, deep):  {fmt_rate(res.xstate['machines_per_s'])}"
            )
    if res.snapshot_bytes:
        rows = []
        for machine in MACHINES:
            dumps, compact = res.snapshot_bytes[machine]
            xs = res.xstate["bytes"].get(machine) if res.xstate else None
            rows.append([machine, str(dumps), str(compact), str(xs) if xs is not None else "n/a"])
        print_table(
            "bytes per stored snapshot (after one event)",
            [
                "machine",
                "json.dumps(to_json())",
                "compact separators",
                "xstate JSON.stringify(persisted)",
            ],
            rows,
        )
    print("\nnotes:")
    for engine in engines:
        print(f"  {engine}: {NOTES[engine]}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="fast smoke run (~0.02 s per measurement, 1 repeat)"
    )
    parser.add_argument(
        "--only",
        default=",".join(ENGINES),
        help=f"comma-separated engines (default: {','.join(ENGINES)})",
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="target seconds per measurement (default 1.0)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed repeats, best kept (default 5)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    args = parser.parse_args(argv)
    engines = [e.strip() for e in args.only.split(",") if e.strip()]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        parser.error(f"unknown engine(s): {', '.join(unknown)}; choose from {', '.join(ENGINES)}")
    engines = [e for e in ENGINES if e in engines]  # canonical order
    target_s = args.seconds if args.seconds is not None else (0.02 if args.quick else 1.0)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 5)

    print(
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.machine()}, cpus={os.cpu_count()}; target {target_s}s x {repeats} repeats"
    )
    res = Results()
    for engine in engines:
        if engine == "xstate":
            bench_xstate(target_s, repeats, res)
        else:
            bench_python(engine, target_s, repeats, res)
            if engine == "backstate" and res.eps["backstate"]:
                bench_backstate_extras(target_s, repeats, res)
    report(res, engines)
    if args.json is not None:
        args.json.write_text(json.dumps(res.__dict__, indent=2, default=str))
    for failure in res.failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if res.failures else 0


if __name__ == "__main__":
    sys.exit(main())
