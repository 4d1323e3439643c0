"""Crash tests: SIGKILL the runtime under load, restart it, check the guarantees.

``crash_worker.py`` runs 50 instances of one parallel machine: API events from two
concurrent senders per instance, numbered messages (single and bursts) between
instances, ``after`` timers (re-armed and cancelled), invoked async services (restarted
by re-entry), a custom action that logs its effect id, and instances paused and resumed.
The module fixture kills it once per ``KILL_POINTS`` entry (from outside at seeded
random moments, right after a reply, during recovery; or by the worker itself inside an
action or at a service start), then runs it once more, stops the load, lets it settle
and closes it cleanly. Each test then checks one guarantee of docs/runtime.md against
the SQLite file (read-only) and the worker's append-only logs.

Reproduce a run with ``BACKSTATE_CRASH_SEED=<seed>`` (the kill points and the load are
seeded; the timing is not).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from backstate.chart import assign, raise_, send_to, setup
from backstate.runtime import Backstate, SimulatedClock, current_effect, instance_ref
from backstate.store import CommitResult, SQLiteStore, StoreError, WriteBatch

from . import crash_worker as worker

SEED = int(os.environ.get("BACKSTATE_CRASH_SEED", "20240611"))
INSTANCES = 50
SENDERS = 2
# Where each run is killed. From outside: at a random moment of the load, right after
# a reply was received, or while it recovers from the previous kill. By the worker
# itself: inside a custom action, at a service start, or at the start of a service
# that `restart` began (right after the commit that stopped the previous one).
KILL_POINTS = (
    "load",
    "reply",
    "recovery",
    "restart",
    "action",
    "service",
    "reply",
    "restart",
    "restart",
)
SELF_KILL_POINTS = ("action", "service", "restart")
KILLS = len(KILL_POINTS)
# Pause/resume instances during the load: their messages and timers are held (durably)
# and pile up, so kills find backlogs whose order recovery must keep.
PAUSE = True
SHOW = 5  # problems quoted in a failure message
WORKER = Path(__file__).with_name("crash_worker.py")
API_EVENTS = ("ping", "burst", "arm", "disarm", "work", "restart")
DONE = "xstate.done.actor.job"
ERROR = "xstate.error.actor.job"


@dataclass
class Row:
    seq: int
    event: dict[str, Any]
    snapshot: dict[str, Any]
    ts: int


@dataclass
class CrashRun:
    seed: int
    kills: list[str]
    history: dict[str, list[Row]]
    instances: dict[str, tuple[int, dict[str, Any]]]
    pending: dict[str, int]  # rows left in inbox, timers, effects
    dead_letters: list[Any]
    accepted: list[str]
    effects: list[tuple[str, str]]
    services: list[str]
    epochs: list[int]
    loops: dict[str, list[Row]]  # the self-re-arming instances' history
    loop_timers: dict[str, int]  # their timer rows at the end
    notes: list[str] = field(default_factory=list)

    def context(self) -> str:
        return f"seed {self.seed}, kills: {'; '.join(self.kills)}"


# -- running the worker ----------------------------------------------------------------------


def _spawn(
    directory: Path,
    db: Path,
    round_: int,
    mode: str,
    self_kill: str | None = None,
    self_kill_after: float = 0.0,
    sandboxed: bool = False,
) -> subprocess.Popen[bytes]:
    config = {
        "dir": str(directory),
        "db": str(db),
        "round": round_,
        "mode": mode,
        "instances": INSTANCES,
        "senders": SENDERS,
        "load_seconds": 0.5,
        "settle_seconds": 3.0,
        "pause": PAUSE,
        "self_kill": self_kill,
        "self_kill_after": self_kill_after,
        "sandbox": str(directory / "sandbox") if sandboxed else None,
    }
    stderr = (directory / f"stderr.r{round_}").open("wb")
    try:
        return subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=directory,
        )
    finally:
        stderr.close()


def _wait_for(proc: subprocess.Popen[bytes], marker: Path, directory: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"worker exited ({proc.returncode}): {_stderr(directory)}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"worker never reached {marker.name}: {_stderr(directory)}")
        time.sleep(0.002)


def _stderr(directory: Path) -> str:
    return "\n".join(p.read_text()[-3000:] for p in sorted(directory.glob("stderr.*")))


def _kill(proc: subprocess.Popen[bytes], directory: Path) -> None:
    if proc.poll() is not None:
        raise AssertionError(
            f"worker exited before the kill ({proc.returncode}): {_stderr(directory)}"
        )
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL


def _kill_at_reply(proc: subprocess.Popen[bytes], log: Path, directory: Path) -> str:
    """SIGKILL as soon as ``log`` grows: just after a reply, while the batch after it
    may be committing."""
    size = log.stat().st_size if log.exists() else 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if log.exists() and log.stat().st_size > size:
            _kill(proc, directory)
            return "at once"
    _kill(proc, directory)
    return "no reply seen"


def _await_self_kill(proc: subprocess.Popen[bytes], directory: Path, timeout: float) -> str:
    try:
        returncode = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc, directory)
        return "not reached; killed from outside"
    assert returncode == -signal.SIGKILL, f"worker exited ({returncode}): {_stderr(directory)}"
    return "reached"


def _run_rounds(directory: Path, db: Path, seed: int, sandboxed: bool) -> list[str]:
    rng = random.Random(seed)
    kills = []
    for round_, planned in enumerate(KILL_POINTS):
        delay = rng.uniform(0.0, 0.05) if planned == "recovery" else rng.uniform(0.1, 1.2)
        # Sandboxed, machine code cannot kill the runtime's process: those rounds are
        # killed from outside at a random moment of the load instead.
        point = "load" if sandboxed and planned in SELF_KILL_POINTS else planned
        self_kill = point if point in SELF_KILL_POINTS else None
        proc = _spawn(directory, db, round_, "load", self_kill, delay, sandboxed)
        if point == "recovery":
            _wait_for(proc, directory / f"recovering.r{round_}", directory, 30)
            time.sleep(delay)
            _kill(proc, directory)
            kills.append(f"r{round_}: {delay * 1000:.0f} ms into recovery")
            continue
        _wait_for(proc, directory / f"ready.r{round_}", directory, 30)
        if self_kill:
            how = _await_self_kill(proc, directory, delay + 5)
            kills.append(f"r{round_}: in a {point} after {delay * 1000:.0f} ms of load ({how})")
            continue
        time.sleep(delay)
        if point == "load":
            _kill(proc, directory)
            kills.append(f"r{round_}: {delay * 1000:.0f} ms into the load")
        else:
            how = _kill_at_reply(proc, directory / "accepted.log", directory)
            kills.append(f"r{round_}: at a reply after {delay * 1000:.0f} ms of load ({how})")
    final = _spawn(directory, db, KILLS, "settle", sandboxed=sandboxed)
    try:
        returncode = final.wait(timeout=40)
    except subprocess.TimeoutExpired:
        final.kill()
        final.wait()
        raise AssertionError(f"the settling worker did not finish: {_stderr(directory)}") from None
    assert returncode == 0, _stderr(directory)
    assert (directory / f"closed.r{KILLS}").exists()
    return kills


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text()
    # One os.write per line: a line is complete unless the write itself was cut short,
    # which a SIGKILL does not do to a small write on a regular file.
    assert text == "" or text.endswith("\n"), f"{path.name} ends in a partial line"
    return text.splitlines()


def _load(directory: Path, db_path: Path, seed: int, kills: list[str], effects: Path) -> CrashRun:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        history: dict[str, list[Row]] = defaultdict(list)
        for name, seq, event, snapshot, ts in db.execute(
            "SELECT instance, seq, event, snapshot, ts FROM history WHERE machine = ?"
            " ORDER BY instance, seq",
            (worker.MACHINE,),
        ):
            history[name].append(Row(seq, json.loads(event), json.loads(snapshot), ts))
        instances = {
            name: (seq, json.loads(snapshot))
            for name, seq, snapshot in db.execute(
                "SELECT name, seq, snapshot FROM instances WHERE machine = ?", (worker.MACHINE,)
            )
        }
        loops: dict[str, list[Row]] = defaultdict(list)
        for name, seq, event, snapshot, ts in db.execute(
            "SELECT instance, seq, event, snapshot, ts FROM history WHERE machine = ?"
            " ORDER BY instance, seq",
            (worker.LOOP,),
        ):
            loops[name].append(Row(seq, json.loads(event), json.loads(snapshot), ts))
        loop_timers = dict(
            db.execute(
                "SELECT instance, count(*) FROM timers WHERE machine = ? GROUP BY instance",
                (worker.LOOP,),
            ).fetchall()
        )
        pending = {
            "inbox": db.execute("SELECT count(*) FROM inbox").fetchone()[0],
            "timers": db.execute(
                "SELECT count(*) FROM timers WHERE machine = ?", (worker.MACHINE,)
            ).fetchone()[0],
        }
        for kind in ("action", "service"):
            pending[f"{kind} effects"] = db.execute(
                "SELECT count(*) FROM effects WHERE kind = ?", (kind,)
            ).fetchone()[0]
        dead = db.execute("SELECT instance, event, sender, reason FROM dead_letters").fetchall()
    finally:
        db.close()
    ran = [tuple(line.split(" ", 1)) for line in _read_lines(effects / "effects.log")]
    return CrashRun(
        seed=seed,
        kills=kills,
        history=dict(history),
        instances=instances,
        pending=pending,
        dead_letters=dead,
        accepted=_read_lines(directory / "accepted.log"),
        effects=[(e[0], e[1]) for e in ran],
        services=_read_lines(effects / "services.log"),
        epochs=[int(line) for line in _read_lines(directory / "epochs.log")],
        loops=dict(loops),
        loop_timers=loop_timers,
    )


@pytest.fixture(scope="module", params=["trusted", "sandboxed"])
def run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CrashRun]:
    """One crash run per mode: machine code in the runtime's process, and in sandboxed
    workers (where actions and services log to the org's scratch folder)."""
    sandboxed = request.param == "sandboxed"
    directory = tmp_path_factory.mktemp("crash")
    db = directory / "crash.db"
    kills = _run_rounds(directory, db, SEED, sandboxed)
    effects = directory / "sandbox" / "-" / "scratch" if sandboxed else directory
    yield _load(directory, db, SEED, kills, effects)


# -- helpers over history ----------------------------------------------------------------------


def _region(row: Row | None, region: str) -> str | None:
    return None if row is None else row.snapshot["value"][region]


def _pairs(rows: list[Row]) -> Iterator[tuple[Row | None, Row]]:
    previous: Row | None = None
    for row in rows:
        yield previous, row
        previous = row


def _is_recovery(event: dict[str, Any]) -> bool:
    if event["type"] == "backstate.error.effect":
        return True
    return event["type"].startswith("xstate.error.actor.") and (
        event.get("error", {}).get("name") == "Interrupted"
    )


def _epoch(run: CrashRun, ts: int) -> int:
    return sum(1 for start in run.epochs if start <= ts) - 1


def _parse_effect(effect_id: str) -> tuple[str, str, int, int]:
    machine, instance, seq, index = effect_id.split("/")
    return machine, instance, int(seq), int(index)


# -- the guarantees ----------------------------------------------------------------------------


def test_the_run_exercised_crashes_under_load(run: CrashRun) -> None:
    """Sanity: every instance exists, there was real load, and the kills hit work in
    flight (effects and services interrupted, recoveries delivered)."""
    assert sorted(run.instances) == worker.instance_names(INSTANCES), run.context()
    assert len(run.epochs) == KILLS + 1, run.context()
    assert len(run.accepted) > 1000, run.context()
    total = sum(len(rows) for rows in run.history.values())
    recoveries = [r for rows in run.history.values() for r in rows if _is_recovery(r.event)]
    assert total > 5000, run.context()
    assert recoveries, f"no kill interrupted an effect; {run.context()}"
    assert any(r.event["type"] == ERROR for r in recoveries), run.context()


def test_accepted_events_are_in_history_exactly_once(run: CrashRun) -> None:
    seen: Counter[tuple[str, str]] = Counter(
        (name, row.event["id"])
        for name, rows in run.history.items()
        for row in rows
        if row.event["type"] in API_EVENTS
    )
    assert len(set(run.accepted)) == len(run.accepted)
    lost = [i for i in run.accepted if seen[(i.split(":")[0], i)] == 0]
    doubled = [i for i in run.accepted if seen[(i.split(":")[0], i)] > 1]
    assert not lost, f"{len(lost)} accepted events lost, e.g. {lost[:5]}; {run.context()}"
    assert not doubled, f"accepted events applied twice: {doubled[:5]}; {run.context()}"


def test_no_transition_doubled(run: CrashRun) -> None:
    for name, rows in run.history.items():
        seqs = [r.seq for r in rows]
        assert seqs == list(range(len(rows))), f"{name}: seqs not contiguous; {run.context()}"
        assert rows[0].event["type"] == "xstate.init"
        seq, snapshot = run.instances[name]
        assert seq == rows[-1].seq, f"{name}: instance at {seq}, history at {rows[-1].seq}"
        assert snapshot == rows[-1].snapshot, f"{name}: snapshot differs from its last history row"
    ids = Counter(
        (name, row.event["id"])
        for name, rows in run.history.items()
        for row in rows
        if "id" in row.event
    )
    doubled = [key for key, count in ids.items() if count > 1]
    assert not doubled, f"events applied twice: {doubled[:5]}; {run.context()}"
    keys = Counter(
        (name, row.event.get("effectId"), row.event["type"])
        for name, rows in run.history.items()
        for row in rows
        if row.event["type"] == "backstate.error.effect"
    )
    assert all(count == 1 for count in keys.values()), f"a recovery event twice; {run.context()}"


def test_effects_run_after_commit_at_most_once(run: CrashRun) -> None:
    """Every effect the custom action logged belongs to a recorded transition (the
    event that caused it), and none ran twice. Also: an effect of a committed transition
    is never silently dropped; it ran, or the instance got ``backstate.error.effect``."""
    assert run.effects, run.context()
    counts = Counter(effect for effect, _ in run.effects)
    twice = [e for e, n in counts.items() if n > 1]
    assert not twice, f"effects ran twice: {twice[:5]}; {run.context()}"
    for effect, key in run.effects:
        machine, instance, seq, _ = _parse_effect(effect)
        rows = run.history.get(instance, [])
        assert machine == worker.MACHINE and seq < len(rows), (
            f"effect {effect} ran but its transition is not in history; {run.context()}"
        )
        assert worker.event_key(rows[seq].event) == key, (
            f"effect {effect} ran for {key}, history has {rows[seq].event}; {run.context()}"
        )
    ran = {effect.rsplit("/", 1)[0] for effect in counts}
    reported = {
        row.event["effectId"].rsplit("/", 1)[0]
        for rows in run.history.values()
        for row in rows
        if row.event["type"] == "backstate.error.effect"
    }
    for name, rows in run.history.items():
        for previous, row in _pairs(rows):
            if (
                _records(previous, row)
                and f"{worker.MACHINE}/{name}/{row.seq}" not in ran | reported
            ):
                raise AssertionError(
                    f"{name}@{row.seq} {row.event['type']}: its action neither ran nor was "
                    f"reported interrupted; {run.context()}"
                )
    assert run.pending["action effects"] == 0, f"actions left unfinished; {run.context()}"


def _active(row: Row | None) -> bool:
    return row is not None and row.snapshot["status"] == "active"


def _records(previous: Row | None, row: Row) -> bool:
    """Does this transition run the ``record`` action?"""
    if not _active(previous):
        return False
    kind = row.event["type"]
    if kind in ("ping", "burst", "msg"):
        return True
    if kind == worker.TICK:
        return _region(previous, "timer") == "armed"
    if kind in (DONE, ERROR):
        return _region(previous, "svc") == "running"
    return False


def _messages(run: CrashRun) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], list[int]]]:
    """Per (sender, receiver): how many messages the sender's committed transitions
    sent (its final counter), and the numbers in the receiver's history, in order."""
    received: dict[tuple[str, str], list[int]] = defaultdict(list)
    for receiver, rows in run.history.items():
        for row in rows:
            if row.event["type"] == "msg":
                received[(row.event["from"], receiver)].append(row.event["n"])
    sent = {
        (sender, receiver): count
        for sender, (_, snapshot) in run.instances.items()
        for receiver, count in snapshot["context"]["out"].items()
    }
    return sent, received


def test_messages_applied_exactly_once(run: CrashRun) -> None:
    sent, received = _messages(run)
    assert sum(sent.values()) > 500, run.context()
    for pair in sorted(set(sent) | set(received)):
        expected = list(range(1, sent.get(pair, 0) + 1))
        got = received.get(pair, [])
        assert sorted(got) == expected, (
            f"{pair[0]} -> {pair[1]}: sent 1..{len(expected)}, received "
            f"{_summarize(got)}; {run.context()}"
        )
    assert run.pending["inbox"] == 0 and not run.dead_letters, (
        f"undelivered: {run.pending}, dead letters {run.dead_letters[:3]}; {run.context()}"
    )


def test_messages_in_order_per_pair(run: CrashRun) -> None:
    _, received = _messages(run)
    disordered = [
        f"{pair[0]} -> {pair[1]}: {_summarize(got)}"
        for pair, got in sorted(received.items())
        if got != sorted(got)
    ]
    assert not disordered, f"out of order: {disordered[:SHOW]}; {run.context()}"


def _summarize(values: list[int]) -> str:
    if len(values) <= 12:
        return str(values)
    return f"{values[:6]} ... {values[-6:]} ({len(values)} in all)"


def test_due_timers_fire_after_restarts(run: CrashRun) -> None:
    """Every time ``armed`` was entered, its timer fired or the state was left (or
    re-entered, which restarts it); a timer that fell due while the process was down
    fires on restart, before the instance takes any API event; after the settling run
    no timer row is left."""
    unfired = []
    for name, rows in run.history.items():
        delay = rows[0].snapshot["context"]["delay"]
        armed: Row | None = None  # the row that (re-)entered armed; its timer not fired yet
        for previous, row in _pairs(rows):
            kind = row.event["type"]
            if armed is not None and kind in API_EVENTS:
                epoch = _epoch(run, row.ts)
                if epoch > _epoch(run, armed.ts) and armed.ts + delay <= run.epochs[epoch]:
                    unfired.append(f"{name}: armed @{armed.seq}, due before restart {epoch}")
            if kind == worker.TICK:
                armed = None  # fired (even if a broken instance then ignored it)
            elif _active(previous) and kind in ("arm", "disarm"):
                armed = row if kind == "arm" else None
        if armed is not None:
            unfired.append(f"{name}: armed @{armed.seq}, never fired")
    assert not unfired, f"timers never fired: {unfired[:SHOW]}; {run.context()}"
    assert run.pending["timers"] == 0, run.context()
    fired = sum(1 for rows in run.history.values() for r in rows if r.event["type"] == worker.TICK)
    assert fired > 100, run.context()


def test_self_re_arming_timers_survive_every_restart(run: CrashRun) -> None:
    """Timers that the transition they fire re-arms (the same id, or two states taking
    turns) keep firing in every run that lasted long enough, and each instance ends
    with exactly one timer row: none was lost by a kill or a clean shutdown."""
    assert sorted(run.loops) == sorted(worker.loop_names()), run.context()
    assert run.loop_timers == dict.fromkeys(worker.loop_names(), 1), run.context()
    ends = [*run.epochs[1:], None]
    silent = []
    for epoch, (start, end) in enumerate(zip(run.epochs, ends, strict=True)):
        killed_early = epoch < len(run.kills) and "recovery" in run.kills[epoch]
        if killed_early or (end is not None and end - start < 1000):
            continue  # killed in recovery, or soon after start
        for name, rows in run.loops.items():
            ticks = [r for r in rows if r.ts >= start and (end is None or r.ts < end)]
            if len([r for r in ticks if r.event["type"].startswith("xstate.after.")]) < 2:
                silent.append(f"{name} in run {epoch}")
    assert not silent, f"timers lost: {silent[:SHOW]}; {run.context()}"
    for name, rows in run.loops.items():
        kinds = {r.snapshot["value"] for r in rows[1:]}
        assert kinds == ({"poll"} if name.startswith("poll") else {"a", "b"}), (name, kinds)


def test_timers_fire_only_when_due_in_the_state_that_set_them(run: CrashRun) -> None:
    """``after`` fires no earlier than its delay after the state was (re-)entered, and
    never once the state was left (leaving a state cancels its timers)."""
    problems = []
    for name, rows in run.history.items():
        delay = rows[0].snapshot["context"]["delay"]
        entered: int | None = None
        for previous, row in _pairs(rows):
            kind = row.event["type"]
            if kind == worker.TICK:
                if _region(previous, "timer") != "armed":
                    problems.append(f"{name}@{row.seq}: fired after its state was left")
                elif entered is not None and row.ts < entered + delay:
                    problems.append(
                        f"{name}@{row.seq}: fired {row.ts - entered} ms after its state was "
                        f"entered; the delay is {delay} ms"
                    )
            if kind == "arm" and _active(previous):
                entered = row.ts  # entered or re-entered: a new timer, due at ts + delay
    assert not problems, f"{len(problems)} stale timers: {problems[:SHOW]}; {run.context()}"


def test_services_run_at_most_once_and_interruptions_are_reported(run: CrashRun) -> None:
    """A service runs only after the transition that started it committed, never twice;
    one running when the process was killed gets ``Interrupted`` after the restart,
    before anything else happens to the instance."""
    counts = Counter(run.services)
    twice = [e for e, n in counts.items() if n > 1]
    assert not twice, f"services ran twice: {twice[:SHOW]}; {run.context()}"
    for effect in counts:
        _, name, seq, _ = _parse_effect(effect)
        rows = run.history[name]
        assert seq < len(rows), f"service {effect} ran, its transition is not in history"
        row = rows[seq]
        assert row.event["type"] in ("work", "restart") and _region(row, "svc") == "running", (
            f"service {effect} started by {row.event}; {run.context()}"
        )
    unreported = []
    for name, rows in run.history.items():
        started: Row | None = None  # the transition that started the running service
        for previous, row in _pairs(rows):
            kind = row.event["type"]
            if started is not None and _epoch(run, row.ts) > _epoch(run, started.ts):
                if kind == ERROR and row.event["error"]["name"] == "Interrupted":
                    started = None
                elif not _is_recovery(row.event):  # other recovery events may come first
                    unreported.append(f"{name}@{started.seq}: then {kind} @{row.seq}")
                    started = None
                continue
            if kind in (DONE, ERROR):
                started = None
            elif _active(previous) and (
                (kind == "work" and _region(previous, "svc") == "idle")
                or (kind == "restart" and _region(previous, "svc") == "running")
            ):
                started = row
    assert not unreported, (
        f"services running at a kill, not reported Interrupted: {unreported[:SHOW]}; "
        f"{run.context()}"
    )


def test_each_service_ends_once_interrupted_ones_with_an_error(run: CrashRun) -> None:
    """Each started service ends in exactly one event while its state is active: its own
    result, or ``Interrupted`` after a restart if the kill caught it running (and it is
    not run again). A stopped service (its state left or re-entered) reports nothing;
    nothing is left over after settling and every instance is still usable."""
    problems = []
    for name, rows in run.history.items():
        started: Row | None = None  # the transition that started the running service
        for previous, row in _pairs(rows):
            kind = row.event["type"]
            was = _region(previous, "svc")
            if kind in (DONE, ERROR):
                if was != "running" or started is None:
                    problems.append(f"{name}@{row.seq}: {kind} while no service ran")
                elif kind == DONE:
                    effect = row.event["output"]["effect"]
                    if _parse_effect(effect)[2] != started.seq:
                        problems.append(
                            f"{name}@{row.seq}: the result of {effect} went to the service "
                            f"started @{started.seq}"
                        )
                elif row.event["error"]["name"] != "Interrupted":
                    problems.append(f"{name}@{row.seq}: unexpected error {row.event['error']}")
                elif _epoch(run, started.ts) == _epoch(run, row.ts):
                    problems.append(f"{name}@{row.seq}: Interrupted without a restart")
                started = None
            elif _active(previous) and (
                (kind == "work" and was == "idle") or (kind == "restart" and was == "running")
            ):
                started = row
        if _region(rows[-1], "svc") != "idle":
            problems.append(f"{name}: a service still running after settling")
        if not _active(rows[-1]):
            problems.append(f"{name}: the instance ended in status {rows[-1].snapshot['status']}")
    if run.pending["service effects"]:
        problems.append(f"{run.pending['service effects']} service effects left unfinished")
    assert not problems, f"{len(problems)} problems: {problems[:SHOW]}; {run.context()}"


def test_recovery_events_come_before_any_other_event(run: CrashRun) -> None:
    """After each restart, an instance's ``Interrupted`` error events precede every
    other event it processes in that process lifetime."""
    for name, rows in run.history.items():
        by_epoch: dict[int, list[Row]] = defaultdict(list)
        for row in rows:
            by_epoch[_epoch(run, row.ts)].append(row)
        for epoch, epoch_rows in by_epoch.items():
            flags = [_is_recovery(r.event) for r in epoch_rows]
            assert epoch > 0 or not any(flags), f"{name}: recovery before any crash"
            assert flags == sorted(flags, reverse=True), (
                f"{name}: in run {epoch} a recovery event came after "
                f"{epoch_rows[flags.index(False)].event}; {run.context()}"
            )


# -- minimal reproductions of what the crash run found ----------------------------------------
# Each failed on the runtime as it was (fixed in 4dc53fd and 3f16eac); regression tests now.


class _SlowStore(SQLiteStore):
    """A slow fsync: events that arrive while a commit runs share the next batch."""

    async def commit_async(self, batch: WriteBatch) -> CommitResult:
        await asyncio.sleep(0.05)
        return await super().commit_async(batch)


def test_repro_timer_replaced_in_the_batch_where_it_falls_due(tmp_path: Path) -> None:
    """A timer replaced by an earlier event of the batch in which the old one falls due
    fired anyway (early), and its replacement's row was deleted."""
    machine = setup().create_machine(
        {
            "initial": "on",
            "context": {"pings": 0},
            "states": {
                "on": {
                    "on": {
                        "go": {"actions": raise_({"type": "ping"}, delay=1000, id="t")},
                        "ping": {"actions": assign({"pings": lambda c, e: c["pings"] + 1})},
                    }
                }
            },
        }
    )

    async def body() -> None:
        clock = SimulatedClock()
        async with Backstate(tmp_path / "x.db", clock=clock) as bs:
            bs.deploy("t", machine)
            await bs.create("t", "a")
            await bs.send("t", "a", "go")  # timer t due at 1000
            replace = asyncio.ensure_future(bs.send("t", "a", "go"))  # t due at 2000 instead,
            clock.advance(1000)  # queued ahead of the old t, which falls due now
            await replace
            await asyncio.sleep(0.05)
            state = await bs.get("t", "a")
        db = sqlite3.connect(tmp_path / "x.db")
        rows = db.execute("SELECT key, due FROM timers").fetchall()
        db.close()
        assert (state.context["pings"], rows) == (0, [("t", 2000)])

    asyncio.run(body())


_gates: list[asyncio.Event] = []


async def _gated_job(input: Any) -> dict[str, Any]:
    gate = asyncio.Event()
    _gates.append(gate)
    await gate.wait()
    return {"effect": current_effect()}


_JOBS = setup(actors={"job": _gated_job}).create_machine(
    {
        "initial": "idle",
        "states": {
            "idle": {"on": {"work": "running"}},
            "running": {
                "invoke": {"id": "job", "src": "job", "onDone": "idle"},
                "on": {"stop": "idle", "restart": {"target": "running", "reenter": True}},
            },
        },
    }
)


def test_repro_result_of_a_stopped_service_reaches_its_successor(tmp_path: Path) -> None:
    """The result of a service stopped by an earlier event of the same batch was
    delivered, and ended the service that replaced it."""

    async def body() -> None:
        _gates.clear()
        async with Backstate(_SlowStore(tmp_path / "x.db"), step_timeout=5) as bs:
            bs.deploy("s", _JOBS)
            await bs.create("s", "a")
            await bs.create("s", "b")
            work = asyncio.ensure_future(bs.send("s", "a", "work"))
            await asyncio.sleep(0.2)  # job 1 runs
            busy = asyncio.ensure_future(bs.create("s", "c"))  # a commit in flight, then
            await asyncio.sleep(0.01)
            restart = asyncio.ensure_future(bs.send("s", "a", "restart"))  # stop 1, start 2,
            await asyncio.sleep(0)
            _gates[0].set()  # and job 1's result, all in the next batch
            await asyncio.sleep(0.3)
            history = await bs.history("s", "a")
            for gate in _gates:
                gate.set()
            await asyncio.gather(work, busy, restart)
        # job 1 was stopped at seq 2: its result must not end job 2
        assert [h.event["type"] for h in history] == ["xstate.init", "work", "restart"]

    asyncio.run(body())


def test_repro_service_stopped_in_its_own_batch_leaves_nothing_to_recover(
    tmp_path: Path,
) -> None:
    """A service started and stopped in one batch kept its effect row (its task was
    cancelled before it ran), so even a clean restart delivered an unhandled
    ``Interrupted`` error that left the instance in status error."""

    async def body() -> None:
        _gates.clear()
        async with Backstate(_SlowStore(tmp_path / "x.db")) as bs:
            bs.deploy("s", _JOBS)
            await bs.create("s", "a")
            busy = asyncio.ensure_future(bs.create("s", "b"))  # a commit in flight, then
            await asyncio.sleep(0.01)
            await asyncio.gather(bs.send("s", "a", "work"), bs.send("s", "a", "stop"), busy)
        async with Backstate(tmp_path / "x.db") as bs:  # a clean restart
            bs.deploy("s", _JOBS)
            await asyncio.sleep(0.1)
            state = await bs.get("s", "a")
            events = [h.event["type"] for h in await bs.history("s", "a")]
        # the job was stopped before it ran: nothing to report after the restart
        assert (state.status, events) == ("active", ["xstate.init", "work", "stop"])

    asyncio.run(body())


class _DyingStore(SQLiteStore):
    """Commits until ``allow`` is set, lets that many more through, then blocks: the
    process "dies" there (a second ``Backstate`` on the file plays the restart)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.allow: int | None = None
        self.released = threading.Event()

    async def commit_async(self, batch: WriteBatch) -> CommitResult:
        if self.allow is not None:
            if self.allow == 0:
                await asyncio.to_thread(self.released.wait)
                raise StoreError("this process is gone")
            self.allow -= 1
        return await super().commit_async(batch)


_RESTARTABLE = setup(actors={"job": _gated_job}).create_machine(
    {
        "initial": "idle",
        "states": {
            "idle": {"on": {"work": "running"}},
            "running": {
                "invoke": {"id": "job", "src": "job", "onDone": "idle", "onError": "idle"},
                "on": {"restart": {"target": "running", "reenter": True}},
            },
        },
    }
)


def test_repro_kill_right_after_a_restarting_transition(tmp_path: Path) -> None:
    """A service stopped by a re-entering transition was finished only in the next
    commit; killed in between, recovery reported both jobs Interrupted and the second
    error left the instance in status error."""

    async def body() -> None:
        _gates.clear()
        store = _DyingStore(tmp_path / "x.db")
        first = Backstate(store)
        first.deploy("s", _RESTARTABLE)
        await first.start()
        await first.create("s", "a")
        sends = [asyncio.ensure_future(first.send("s", "a", "work"))]  # job 1 runs
        await asyncio.sleep(0.1)
        store.allow = 1  # the restart commits (stop job 1, start job 2), then the end
        sends.append(asyncio.ensure_future(first.send("s", "a", "restart")))
        await asyncio.sleep(0.2)
        async with Backstate(tmp_path / "x.db") as second:
            second.deploy("s", _RESTARTABLE)
            await asyncio.sleep(0.2)
            state = await second.get("s", "a")
            events = [h.event["type"] for h in await second.history("s", "a")]
        store.released.set()
        for gate in _gates:
            gate.set()
        await first.close()
        for send in sends:
            send.cancel()
        # only job 2 was running: one Interrupted error, and the instance lives on
        assert (state.status, events[3:]) == ("active", ["xstate.error.actor.job"])

    asyncio.run(body())


def test_repro_resume_keeps_held_messages_first(tmp_path: Path) -> None:
    """``resume`` let a message queued behind it overtake the ones held while paused."""
    machine = setup().create_machine(
        {
            "initial": "on",
            "context": {"n": 0},
            "states": {
                "on": {
                    "on": {
                        "go": {
                            "actions": [
                                assign({"n": lambda c, e: c["n"] + 1}),
                                send_to(
                                    lambda c, e: instance_ref("m", e["to"]),
                                    lambda c, e: {"type": "msg", "n": c["n"]},
                                ),
                            ]
                        },
                        "msg": {},
                        "noop": {},
                    }
                }
            },
        }
    )
    # Timings that queue b's resume, then message 2, before b's next turn (which depends
    # on how the processor overlaps building and committing batches).
    variants = [(other, delay) for other in (False, True) for delay in (0.0, 0.01, 0.03)]

    async def body() -> dict[str, list[int]]:
        got = {}
        async with Backstate(_SlowStore(tmp_path / "x.db")) as bs:
            bs.deploy("m", machine)
            await bs.create("m", "c")
            for i, (other, delay) in enumerate(variants):
                a, b = f"a{i}", f"b{i}"
                await bs.create("m", a)
                await bs.create("m", b)
                await bs.pause("m", b)
                await bs.send("m", a, {"type": "go", "to": b})  # message 1 is held for b
                second = asyncio.ensure_future(bs.send("m", a, {"type": "go", "to": b}))
                await asyncio.sleep(0.001)  # message 2 commits (slowly) ...
                if other:  # ... while the next batch is built
                    await asyncio.sleep(0)
                    second = asyncio.gather(second, bs.send("m", "c", "noop"))
                await asyncio.sleep(delay)
                await asyncio.gather(bs.resume("m", b), second)  # ... and b's resume queued
                await asyncio.sleep(0.1)
                history = await bs.history("m", b)
                got[b] = [h.event["n"] for h in history if h.event["type"] == "msg"]
        return got

    got = asyncio.run(body())
    assert got == {f"b{i}": [1, 2] for i in range(len(variants))}
