"""Child process for tests/runtime/test_crash.py: runs ``Backstate`` under load until
the test SIGKILLs it (mode ``load``), or runs, stops the load and settles (``settle``).

Usage: ``python crash_worker.py CONFIG_JSON``. Everything the checker needs that the
store does not hold goes to append-only log files in ``config["dir"]``, each line
written with one ``os.write`` on an ``O_APPEND`` descriptor (the kernel keeps it
across a SIGKILL of this process; only a power loss would need an fsync):

- ``accepted.log``: the id of every API event whose ``send`` returned;
- ``effects.log``: ``<effect id> <event key>`` from the custom action ``record``;
- ``services.log``: the effect id of every run of the service ``job``, at its start;
- ``epochs.log``: the clock (ms) just before each ``start()``, i.e. each recovery.

With ``config["self_kill"]`` set, the process SIGKILLs itself at that point (inside an
action, at a service start, at the start of a service a ``restart`` began) once the load
has run ``self_kill_after`` seconds: kill points too precise to hit from outside.

With ``config["pause"]``, a pauser task pauses PAUSED instances at a time for 0.1-0.4 s,
so that messages and timers pile up for them; each run first resumes instances a kill
left paused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from backstate.chart import assign, send_to, setup
from backstate.runtime import Backstate, Conflict, current_effect, instance_ref

MACHINE = "node"
TICK = f"xstate.after.tick.{MACHINE}.timer.armed"
# Instances that never settle: each re-arms its own timer forever, the same timer id
# re-armed by the transition it fires ("poll") or two states' timers taking turns
# ("alternate"). Their timers must survive every kill and restart.
LOOP = "loop"
LOOPS = 10
PEERS = 6  # each instance pings the next PEERS instances: busy pairs, longer backlogs
PAUSED = 8  # instances paused at a time


# What makes this file a machine file, for the sandboxed runs.
SANDBOXED = """

LOGS = Logs(Path("/scratch"))
machine = {build}()


def allow_read(**kwargs: Any) -> bool:
    return True


def allow_write(**kwargs: Any) -> bool:
    return True
"""


def instance_names(count: int) -> list[str]:
    return [f"n{i:02d}" for i in range(count)]


def timer_delay(index: int) -> int:
    return 50 + (index * 37) % 250  # 50..299 ms


def event_key(event: dict[str, Any]) -> str:
    """What ``record`` logs for an event; the checker recomputes it from history."""
    if "id" in event:
        return str(event["id"])
    output = event.get("output")
    if isinstance(output, dict) and "effect" in output:
        return str(output["effect"])
    return str(event["type"])


class Logs:
    def __init__(self, directory: Path) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self.fds = {
            name: os.open(directory / f"{name}.log", flags, 0o644)
            for name in ("accepted", "effects", "services", "epochs")
        }

    def write(self, name: str, line: str) -> None:
        os.write(self.fds[name], (line + "\n").encode())


LOGS: Logs | None = None


def _log(name: str, line: str) -> None:
    assert LOGS is not None
    LOGS.write(name, line)


SELF_KILL: dict[str, Any] = {"point": None, "at": 0.0}


def _maybe_die(point: str) -> None:
    """The in-process kill points: SIGKILL this process at the first ``point`` reached
    once the load has run for the chosen time."""
    if SELF_KILL["point"] == point and time.monotonic() >= SELF_KILL["at"]:
        os.kill(os.getpid(), signal.SIGKILL)


def record(context: dict[str, Any], event: dict[str, Any]) -> None:
    _log("effects", f"{current_effect()} {event_key(event)}")
    _maybe_die("action")  # done, but not yet recorded as done


async def job(input: dict[str, Any]) -> dict[str, Any]:
    effect = current_effect()
    _log("services", str(effect))
    # A restart's effects: 0 stops the running job, 1 starts the new one. Dying here is
    # dying right after the commit of the transition that stopped and started them.
    _maybe_die("restart" if str(effect).endswith("/1") else "service")
    await asyncio.sleep(input["ms"] / 1000)
    return {"effect": effect}


def loop_names() -> list[str]:
    return [f"{'poll' if i % 2 == 0 else 'alternate'}{i:02d}" for i in range(LOOPS)]


def build_loop() -> Any:
    tick = assign({"ticks": lambda context, event: context["ticks"] + 1})
    return setup(delays={"period": lambda context, event: context["period"]}).create_machine(
        {
            "id": LOOP,
            "initial": "start",
            "context": lambda input: {**input, "ticks": 0},
            "states": {
                "start": {
                    "always": [
                        {"guard": lambda c, e: c["poll"], "target": "poll"},
                        {"target": "a"},
                    ]
                },
                "poll": {"after": {"period": {"target": "poll", "reenter": True, "actions": tick}}},
                "a": {"after": {"period": {"target": "b", "actions": tick}}},
                "b": {"after": {"period": {"target": "a", "actions": tick}}},
            },
        }
    )


def _count_to(peer_of: Any) -> Any:
    def update(context: dict[str, Any], event: dict[str, Any]) -> dict[str, int]:
        peer = peer_of(context, event)
        return {**context["out"], peer: context["out"].get(peer, 0) + 1}

    return update


def _message_to(peer_of: Any) -> tuple[Any, Any]:
    """``send_to`` target and event: the message numbered by the (already assigned)
    per-receiver counter."""

    def target(context: dict[str, Any], event: dict[str, Any]) -> str:
        return instance_ref(MACHINE, peer_of(context, event))

    def message(context: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        peer = peer_of(context, event)
        n = context["out"][peer]
        return {
            "type": "msg",
            "from": context["name"],
            "n": n,
            "id": f"{context['name']}>{peer}#{n}",
        }

    return target, message


def build_machine() -> Any:
    def event_peer(context: dict[str, Any], event: dict[str, Any]) -> str:
        return str(event["peer"])

    def timer_peer(context: dict[str, Any], event: dict[str, Any]) -> str:
        return str(context["timerPeer"])

    ping_to, ping_msg = _message_to(event_peer)
    tick_to, tick_msg = _message_to(timer_peer)
    return setup(
        actions={"record": record},
        actors={"job": job},
        delays={"tick": lambda context, event: context["delay"]},
    ).create_machine(
        {
            "id": MACHINE,
            "type": "parallel",
            "context": lambda input: {
                "name": input["name"],
                "delay": input["delay"],
                "timerPeer": input["timerPeer"],
                "out": {},
            },
            "states": {
                "main": {
                    "on": {
                        "ping": {
                            "actions": [
                                assign({"out": _count_to(event_peer)}),
                                send_to(ping_to, ping_msg),
                                "record",
                            ]
                        },
                        "burst": {  # three messages to one peer in one transition
                            "actions": [
                                *[
                                    action
                                    for _ in range(3)
                                    for action in (
                                        assign({"out": _count_to(event_peer)}),
                                        send_to(ping_to, ping_msg),
                                    )
                                ],
                                "record",
                            ]
                        },
                        "msg": {"actions": ["record"]},
                    }
                },
                "timer": {
                    "initial": "idle",
                    "states": {
                        "idle": {"on": {"arm": "armed"}},
                        "armed": {
                            "after": {
                                "tick": {
                                    "target": "idle",
                                    "actions": [
                                        assign({"out": _count_to(timer_peer)}),
                                        send_to(tick_to, tick_msg),
                                        "record",
                                    ],
                                }
                            },
                            "on": {
                                "arm": {"target": "armed", "reenter": True},
                                "disarm": "idle",
                            },
                        },
                    },
                },
                "svc": {
                    "initial": "idle",
                    "states": {
                        "idle": {"on": {"work": "running"}},
                        "running": {
                            "invoke": {
                                "id": "job",
                                "src": "job",
                                "input": lambda context, event: {"ms": event["ms"]},
                                "onDone": {"target": "idle", "actions": ["record"]},
                                "onError": {"target": "idle", "actions": ["record"]},
                            },
                            "on": {"restart": {"target": "running", "reenter": True}},
                        },
                    },
                },
            },
        }
    )


async def _sender(
    bs: Backstate, names: list[str], me: int, sender: int, tag: str, stop: asyncio.Event
) -> None:
    rng = random.Random(f"{tag}:{me}:{sender}")
    name = names[me]
    k = 0
    while not stop.is_set():
        k += 1
        event_id = f"{name}:{tag}:{sender}:{k}"
        r = rng.random()
        if r < 0.45:
            peer = names[(me + rng.randint(1, PEERS)) % len(names)]
            kind = "burst" if r < 0.1 else "ping"
            event: dict[str, Any] = {"type": kind, "id": event_id, "peer": peer}
        elif r < 0.62:
            event = {"type": "arm", "id": event_id}
        elif r < 0.70:
            event = {"type": "disarm", "id": event_id}
        elif r < 0.88:
            event = {"type": "work", "id": event_id, "ms": rng.randint(20, 150)}
        else:
            event = {"type": "restart", "id": event_id, "ms": rng.randint(20, 150)}
        try:
            await bs.send(MACHINE, name, event)
        except Conflict:  # paused: not accepted
            await asyncio.sleep(0.02)
            continue
        _log("accepted", event_id)
        await asyncio.sleep(rng.uniform(0, 0.02))


async def _pauser(bs: Backstate, names: list[str], tag: str, stop: asyncio.Event) -> None:
    """Pauses a few instances at a time: their messages and timers pile up (durably)
    until ``resume``, so a kill finds backlogs whose order recovery must keep."""
    rng = random.Random(f"{tag}:pauser")
    while not stop.is_set():
        chosen = rng.sample(names, PAUSED)
        for name in chosen:
            await bs.pause(MACHINE, name)
        await asyncio.sleep(rng.uniform(0.1, 0.4))
        for name in chosen:
            await bs.resume(MACHINE, name)
        await asyncio.sleep(rng.uniform(0, 0.1))


def _quiet(db_path: str) -> bool:
    """No work left: no inbox row, no effect, no timer but the loops' (which never end)."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        left = [
            db.execute("SELECT count(*) FROM inbox").fetchone()[0],
            db.execute("SELECT count(*) FROM effects").fetchone()[0],
            db.execute("SELECT count(*) FROM timers WHERE machine = ?", (MACHINE,)).fetchone()[0],
        ]
        return left == [0, 0, 0]
    finally:
        db.close()


async def main(config: dict[str, Any]) -> None:
    global LOGS
    directory = Path(config["dir"])
    LOGS = Logs(directory)
    names = instance_names(config["instances"])
    tag = f"r{config['round']}"
    if config.get("sandbox"):
        # This very file is the machines' source, run in sandboxed workers: their
        # actions and services write effects.log and services.log in the scratch folder.
        from backstate.sandbox import Sandbox

        sandbox = Sandbox(Path(config["sandbox"]))
        bs = Backstate(config["db"], code=sandbox)
        source = Path(__file__).read_text()
        await sandbox.deploy(bs, MACHINE, source + SANDBOXED.format(build="build_machine"))
        await sandbox.deploy(bs, LOOP, source + SANDBOXED.format(build="build_loop"))
    else:
        bs = Backstate(config["db"])
        bs.deploy(MACHINE, build_machine())
        bs.deploy(LOOP, build_loop())
    _log("epochs", str(bs.clock.now_ms()))
    (directory / f"recovering.{tag}").touch()
    await bs.start()
    for i, name in enumerate(names):
        data = {"name": name, "delay": timer_delay(i), "timerPeer": names[(i + 1) % len(names)]}
        # created already by an earlier round (maybe one killed before it replied)
        with contextlib.suppress(Conflict):
            await bs.create(MACHINE, name, input=data)
        if config["pause"] and (await bs.get(MACHINE, name)).paused:  # by the last run
            await bs.resume(MACHINE, name)
    for i, name in enumerate(loop_names()):
        with contextlib.suppress(Conflict):
            loop = {"period": 20 + 5 * i, "poll": name.startswith("poll")}  # 20-65 ms
            await bs.create(LOOP, name, input=loop)
    (directory / f"ready.{tag}").touch()
    SELF_KILL.update(point=config["self_kill"], at=time.monotonic() + config["self_kill_after"])
    stop = asyncio.Event()
    senders = [
        asyncio.create_task(_sender(bs, names, i, s, tag, stop))
        for i in range(len(names))
        for s in range(config["senders"])
    ]
    if config["pause"]:
        senders.append(asyncio.create_task(_pauser(bs, names, tag, stop)))
    if config["mode"] == "load":
        await asyncio.gather(*senders)  # until SIGKILL
        return
    await asyncio.sleep(config["load_seconds"])
    stop.set()
    try:
        await asyncio.wait_for(asyncio.gather(*senders), config["settle_seconds"] * 5)
    except TimeoutError:
        task = getattr(bs.processor, "_task", None)
        failure = task.exception() if task is not None and task.done() else None
        print(f"sends never returned; the processor task: {task!r}, {failure!r}", file=sys.stderr)
        os._exit(3)
    deadline = time.monotonic() + config["settle_seconds"]
    quiet_polls = 0
    while time.monotonic() < deadline and quiet_polls < 5:
        await asyncio.sleep(0.05)
        quiet_polls = quiet_polls + 1 if _quiet(config["db"]) else 0
    await bs.close()
    (directory / f"closed.{tag}").touch()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
