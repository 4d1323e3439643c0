"""The durable runtime's guarantees, on a real store: each test runs on SQLite and on
PostgreSQL (the ``db`` fixture, tests/runtime/conftest.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from backstate.chart import assign, create_machine, raise_, send_parent, send_to, setup
from backstate.runtime import (
    Backstate,
    Conflict,
    EventRejected,
    Forbidden,
    InvalidRequest,
    NotFound,
    SimulatedClock,
    current_effect,
    instance_ref,
    persistent,
)
from backstate.store import SequenceConflict, StoreError, WriteBatch
from tests.store.targets import Target


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


COUNTER = {
    "initial": "idle",
    "context": {"n": 0},
    "states": {
        "idle": {
            "on": {
                "inc": {
                    "actions": [assign({"n": lambda c, e: c["n"] + e.get("by", 1)}), "observe"]
                },
                "boom": {"guard": "explodes", "target": "idle"},
                "grow": {"actions": assign({"blob": lambda c, e: "x" * e["size"]})},
                "wait": "waiting",
            }
        },
        "waiting": {"after": {"1000": "idle"}, "on": {"leave": "idle"}},
    },
}


def counter(observe: Callable[[Any, Any], None] = lambda c, e: None) -> Any:
    def explodes(context: Any, event: Any) -> bool:
        raise ValueError("guard exploded")

    return setup(actions={"observe": observe}, guards={"explodes": explodes}).create_machine(
        COUNTER
    )


def test_create_send_get_history(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("counter", counter())
            state = await bs.create("counter", "c1")
            assert (state.value, state.context, state.seq) == ("idle", {"n": 0}, 0)
            state = await bs.send("counter", "c1", {"type": "inc", "by": 2})
            assert (state.context, state.seq) == ({"n": 2}, 1)
            assert (await bs.get("counter", "c1")).context == {"n": 2}
            history = await bs.history("counter", "c1")
            assert [(h.seq, h.event["type"], h.snapshot["context"]) for h in history] == [
                (0, "xstate.init", {"n": 0}),
                (1, "inc", {"n": 2}),
            ]
            with pytest.raises(Conflict) as info:
                await bs.create("counter", "c1")
            assert info.value.code == "instance-exists"
            with pytest.raises(NotFound):
                await bs.send("counter", "nope", "inc")

    run(body)


def test_state_survives_restart(db: Target) -> None:
    async def first() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("counter", counter())
            await bs.create("counter", "c1")
            await bs.send("counter", "c1", "inc")

    async def second() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("counter", counter())
            assert (await bs.send("counter", "c1", "inc")).context == {"n": 2}

    run(first)
    run(second)


def test_bad_input_is_rejected_and_changes_nothing(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("counter", counter())
            await bs.create("counter", "c1")
            cases: list[tuple[Any, str]] = [
                ({"type": 3}, "invalid-event"),
                ("xstate.init", "invalid-event"),
                ("", "invalid-event"),
                ({"type": ""}, "invalid-event"),
                ({"type": "inc", "by": float("nan")}, "invalid-json"),
                ({"type": "inc", "x": object()}, "invalid-json"),
                # 200,001 characters but 400,002 bytes of UTF-8: the limit is in bytes.
                ({"type": "inc", "x": "é" * 200_001}, "event-too-large"),
            ]
            for event, code in cases:
                with pytest.raises(InvalidRequest) as info:
                    await bs.send("counter", "c1", event)
                assert info.value.code == code
            for name in ("", "a b", "x" * 129, "é"):
                with pytest.raises(InvalidRequest) as info:
                    await bs.create("counter", name)
                assert info.value.code == "invalid-name"
            with pytest.raises(EventRejected) as rejected:
                await bs.send("counter", "c1", "boom")
            assert rejected.value.code == "event-rejected"
            with pytest.raises(InvalidRequest) as big:
                await bs.send("counter", "c1", {"type": "grow", "size": 400_001})
            assert big.value.code == "context-too-large"
            assert (await bs.get("counter", "c1")).seq == 0
            # A creation refused for its size leaves the name free.
            with pytest.raises(InvalidRequest) as big:
                await bs.create("counter", "c2", context={"count": 0, "x": "y" * 400_001})
            assert big.value.code == "context-too-large"
            with pytest.raises(NotFound):
                await bs.get("counter", "c2")
            assert (await bs.create("counter", "c2")).seq == 0

    run(body)
    assert db.rows("SELECT count(*) FROM history") == [(2,)]
    assert db.rows("SELECT seq FROM instances") == [(0,), (0,)]


def test_effects_run_after_their_transition_is_committed(db: Target) -> None:
    seen: list[tuple[str | None, list[Any]]] = []

    def observe(context: Any, event: Any) -> None:
        # A separate connection sees the transition already committed.
        seen.append((current_effect(), db.rows("SELECT seq FROM history WHERE seq = 1")))

    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("counter", counter(observe))
            await bs.create("counter", "c1")
            await bs.send("counter", "c1", "inc")

    run(body)
    assert seen == [("counter/c1/1/0", [(1,)])]
    assert db.rows("SELECT count(*) FROM effects") == [(0,)]


def test_a_failed_commit_writes_nothing_and_changes_nothing_in_memory(db: Target) -> None:
    ran: list[Any] = []
    failing = False

    async def body() -> None:
        nonlocal failing
        store = db.open()
        commit = store.commit_async

        async def failing_commit(batch: WriteBatch) -> Any:
            if failing:
                raise StoreError("disk on fire")
            return await commit(batch)

        store.commit_async = failing_commit  # type: ignore[method-assign]
        async with Backstate(store) as bs:
            bs.deploy("counter", counter(lambda c, e: ran.append(e)))
            await bs.create("counter", "c1")
            failing = True
            with pytest.raises(Exception) as info:
                await bs.send("counter", "c1", "inc")
            assert getattr(info.value, "code", None) == "store-unavailable"
            failing = False
            await asyncio.sleep(0.05)
            assert (await bs.get("counter", "c1")).seq == 0
            assert (await bs.send("counter", "c1", "inc")).seq == 1

    run(body)
    assert len(ran) == 1
    history = db.rows("SELECT seq, event FROM history ORDER BY seq")
    assert [(seq, json.loads(event)["type"]) for seq, event in history] == [
        (0, "xstate.init"),
        (1, "inc"),
    ]


def test_interrupted_effects_are_not_rerun_and_get_error_events_first(db: Target) -> None:
    ran: list[str] = []
    machine = setup(actions={"observe": lambda c, e: ran.append(e["type"])}).create_machine(
        {
            "initial": "a",
            "context": {"errors": []},
            "on": {
                "backstate.error.effect": {
                    "actions": assign({"errors": lambda c, e: [*c["errors"], e["effectId"]]})
                },
                "inc": {"actions": "observe"},
            },
            "states": {"a": {}},
        }
    )

    async def first() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("m", machine)
            await bs.create("m", "i")

    run(first)
    # As if the process died after committing a transition whose action never finished.
    db.rows(
        "INSERT INTO effects (id, machine, instance, kind, name, child) VALUES ('m/i/7/0', 'm', 'i', 'action', 'observe', NULL)"
    )

    async def second() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("m", machine)
            state = await bs.send("m", "i", "inc")
            assert state.context == {"errors": ["m/i/7/0"]}
            history = await bs.history("m", "i")
            assert [h.event["type"] for h in history] == [
                "xstate.init",
                "backstate.error.effect",
                "inc",
            ]

    run(second)
    assert ran == ["inc"]
    assert db.rows("SELECT count(*) FROM effects") == [(0,)]


def test_timers_fire_after_restart_and_leaving_cancels_them(db: Target) -> None:
    clock = SimulatedClock(0)

    async def first() -> None:
        async with Backstate(db.open(), clock=clock) as bs:
            bs.deploy("counter", counter())
            for name in ("stay", "leave"):
                await bs.create("counter", name)
                await bs.send("counter", name, "wait")
            await bs.send("counter", "leave", "leave")
            assert db.rows("SELECT instance FROM timers") == [("stay",)]

    async def second() -> None:
        async with Backstate(db.open(), clock=clock) as bs:
            bs.deploy("counter", counter())
            clock.advance(499)
            await asyncio.sleep(0.05)
            assert (await bs.get("counter", "stay")).value == "waiting"
            clock.advance(1)
            await eventually(lambda: _value_is(bs, "stay", "idle"))
            history = await bs.history("counter", "stay")
            assert history[-1].event["type"] == "xstate.after.1000.(machine).waiting"
            assert [h.event["type"] for h in await bs.history("counter", "leave")][-1] == "leave"
            await bs.send("counter", "stay", "wait")

    async def third() -> None:
        # The timer fell due while the process was down: it fires at start.
        async with Backstate(db.open(), clock=clock) as bs:
            bs.deploy("counter", counter())
            await eventually(lambda: _value_is(bs, "stay", "idle"))

    run(first)
    clock.advance(500)
    run(second)
    clock.advance(5000)
    run(third)
    assert db.rows("SELECT count(*) FROM timers") == [(0,)]


async def _value_is(bs: Backstate, name: str, value: str) -> bool:
    return (await bs.get("counter", name)).value == value


def test_services_settle_and_time_out(db: Target) -> None:
    async def fast(input: Any) -> Any:
        await asyncio.sleep(0.01)
        return {"echo": input}

    async def slow(input: Any) -> Any:
        await asyncio.sleep(10)

    machine = setup(actors={"fast": fast, "slow": slow}).create_machine(
        {
            "initial": "idle",
            "context": {},
            "states": {
                "idle": {"on": {"fast": "fast", "slow": "slow"}},
                "fast": {
                    "invoke": {
                        "id": "f",
                        "src": "fast",
                        "input": lambda c, e: e["type"],
                        "onDone": {
                            "target": "idle",
                            "actions": assign({"out": lambda c, e: e["output"]}),
                        },
                    }
                },
                "slow": {
                    "invoke": {
                        "id": "s",
                        "src": "slow",
                        "onError": {
                            "target": "failed",
                            "actions": assign({"err": lambda c, e: e["error"]["name"]}),
                        },
                    }
                },
                "failed": {},
            },
        }
    )

    async def body() -> None:
        async with Backstate(db.open(), step_timeout=0.2) as bs:
            bs.deploy("m", machine)
            await bs.create("m", "i")
            state = await bs.send("m", "i", "fast")
            assert (state.value, state.context) == ("idle", {"out": {"echo": "fast"}})
            state = await bs.send("m", "i", "slow")
            assert state.value in ("slow", "failed")
            await eventually(lambda: _is(bs, "failed"))
            assert (await bs.get("m", "i")).context["err"] == "Timeout"

    async def _is(bs: Backstate, value: str) -> bool:
        return (await bs.get("m", "i")).value == value

    run(body)


def test_messages_between_instances_are_ordered_and_exactly_once(db: Target) -> None:
    sender = setup().create_machine(
        {
            "initial": "s",
            "context": {"k": 0},
            "states": {
                "s": {
                    "on": {
                        "burst": {
                            "actions": [
                                assign({"k": lambda c, e: c["k"] + 1}),
                                send_to(
                                    lambda c, e: instance_ref("sink", "one"),
                                    lambda c, e: {"type": "n", "k": c["k"]},
                                ),
                                assign({"k": lambda c, e: c["k"] + 1}),
                                send_to(
                                    lambda c, e: instance_ref("sink", "one"),
                                    lambda c, e: {"type": "n", "k": c["k"]},
                                ),
                            ]
                        }
                    }
                }
            },
        }
    )
    sink = setup().create_machine(
        {
            "initial": "r",
            "context": {"got": []},
            "states": {
                "r": {"on": {"n": {"actions": assign({"got": lambda c, e: [*c["got"], e["k"]]})}}}
            },
        }
    )

    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("src", sender)
            bs.deploy("sink", sink)
            await bs.create("sink", "one")
            await bs.create("src", "a")
            await asyncio.gather(*(bs.send("src", "a", "burst") for _ in range(20)))

            async def all_arrived() -> bool:
                return len((await bs.get("sink", "one")).context["got"]) == 40

            await eventually(all_arrived)
            assert (await bs.get("sink", "one")).context["got"] == list(range(1, 41))

    run(body)


def test_failed_messages_retry_then_dead_letter_and_can_be_redelivered(db: Target) -> None:
    clock = SimulatedClock(0)
    guarded = setup(guards={"open": lambda c, e: c["open"]}).create_machine(
        {
            "initial": "r",
            "context": {"open": False, "got": 0},
            "states": {
                "r": {
                    "on": {
                        "open": {"actions": assign({"open": True})},
                        "msg": {
                            "guard": "open",
                            "actions": assign({"got": lambda c, e: c["got"] + 1}),
                        },
                    }
                }
            },
        }
    )

    def strict_guard(context: Any, event: Any) -> bool:
        if not context["open"]:
            raise RuntimeError("not open yet")
        return True

    receiver = guarded.provide(guards={"open": strict_guard})
    sender = setup().create_machine(
        {
            "initial": "s",
            "states": {
                "s": {
                    "on": {"go": {"actions": send_to(instance_ref("recv", "r"), {"type": "msg"})}}
                }
            },
        }
    )

    async def body() -> None:
        async with Backstate(db.open(), clock=clock) as bs:
            bs.deploy("recv", receiver)
            bs.deploy("send", sender)
            await bs.create("recv", "r")
            await bs.create("send", "s")
            await bs.send("send", "s", "go")
            for _ in range(6):
                await asyncio.sleep(0.05)
                clock.advance(20_000)
            await eventually(lambda: _dead(bs, 1))
            [letter] = await bs.dead_letters()
            assert (letter.instance, letter.sender, letter.attempts) == ("r", "send/s", 5)
            assert "event-rejected" in letter.reason
            await bs.send("recv", "r", "open")
            await bs.redeliver(letter.id)

            async def delivered() -> bool:
                return (await bs.get("recv", "r")).context["got"] == 1

            await eventually(delivered)
            assert await bs.dead_letters() == []

    async def _dead(bs: Backstate, n: int) -> bool:
        return len(await bs.dead_letters()) == n

    run(body)


def test_pause_rejects_events_and_holds_timers(db: Target) -> None:
    clock = SimulatedClock(0)

    async def body() -> None:
        async with Backstate(db.open(), clock=clock) as bs:
            bs.deploy("counter", counter())
            await bs.create("counter", "c")
            await bs.send("counter", "c", "wait")
            await bs.pause("counter", "c")
            with pytest.raises(Conflict) as info:
                await bs.send("counter", "c", "inc")
            assert info.value.code == "invalid-state"
            clock.advance(5000)
            await asyncio.sleep(0.1)
            assert (await bs.get("counter", "c")).value == "waiting"
            await bs.resume("counter", "c")
            await eventually(lambda: _value_is(bs, "c", "idle"))

    run(body)


def test_delete_removes_everything(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open(), clock=SimulatedClock(0)) as bs:
            bs.deploy("counter", counter())
            await bs.create("counter", "c")
            await bs.send("counter", "c", "wait")
            await bs.delete("counter", "c")
            with pytest.raises(NotFound):
                await bs.get("counter", "c")
            await bs.create("counter", "c")

    run(body)
    assert db.rows("SELECT count(*) FROM history") == [(1,)]
    assert db.rows("SELECT count(*) FROM timers") == [(0,)]


def test_authorizers_and_sender_identity(db: Target) -> None:
    calls: list[dict[str, Any]] = []

    def allow_write(**kw: Any) -> bool:
        calls.append(kw)
        sender = kw["auth_context"].get("stateBackedSender")
        return (
            kw["auth_context"].get("sub") == "ok" or (sender or {}).get("machineName") == "parent"
        )

    child = setup().create_machine(
        {
            "initial": "c",
            "context": {"pings": 0},
            "states": {
                "c": {
                    "on": {
                        "ping": {
                            "actions": [
                                assign({"pings": lambda c, e: c["pings"] + 1}),
                                send_parent({"type": "pong"}),
                            ]
                        }
                    }
                }
            },
        }
    )
    parent = setup(actors={"kid": persistent("child")}).create_machine(
        {
            "initial": "p",
            "context": {"pongs": 0},
            "states": {
                "p": {
                    "invoke": {"id": "kid", "src": "kid"},
                    "on": {
                        "go": {"actions": send_to("kid", {"type": "ping"})},
                        "pong": {"actions": assign({"pongs": lambda c, e: c["pongs"] + 1})},
                    },
                }
            },
        }
    )

    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy(
                "child",
                child,
                allow_write=allow_write,
                allow_read=lambda **kw: kw["auth_context"].get("sub") == "ok",
            )
            bs.deploy("parent", parent)
            await bs.create("parent", "P")
            kid = await bs.get("child", "P-kid")
            assert kid.value == "c"
            with pytest.raises(Forbidden) as info:
                await bs.send("child", "P-kid", "ping", auth={"sub": "mallory"})
            assert info.value.code == "rejected-by-machine-authorizer"
            with pytest.raises(Forbidden):
                await bs.get("child", "P-kid", auth={"sub": "mallory"})
            await bs.send("parent", "P", "go")

            async def ponged() -> bool:
                return (await bs.get("parent", "P")).context["pongs"] == 1

            await eventually(ponged)
            assert (await bs.get("child", "P-kid", auth={"sub": "ok"})).context == {"pings": 1}
            assert {"stateBackedSender": {"machineName": "parent", "machineInstanceName": "P"}} in [
                c["auth_context"] for c in calls
            ]

    run(body)


def test_logs_are_captured_per_instance_and_time(db: Target) -> None:
    clock = SimulatedClock(1_000)

    def chatty(context: Any, event: Any) -> None:
        print("count is", context["n"])

    async def body() -> None:
        async with Backstate(db.open(), clock=clock) as bs:
            bs.deploy("counter", counter(chatty))
            await bs.create("counter", "c")
            await bs.send("counter", "c", "inc")
            clock.advance(1_000)
            await bs.send("counter", "c", "inc")
            await asyncio.sleep(0.05)
            logs = await bs.logs(machine="counter")
            assert [(g.ts, g.instance, g.message) for g in logs] == [
                (1_000, "c", "count is 1"),
                (2_000, "c", "count is 2"),
            ]
            assert [g.message for g in await bs.logs(since=1_500)] == ["count is 2"]

    run(body)


def test_raised_self_events_and_json_snapshots(db: Target) -> None:
    machine = setup().create_machine(
        {
            "initial": "a",
            "states": {
                "a": {"on": {"go": {"target": "b", "actions": raise_({"type": "next"})}}},
                "b": {"on": {"next": "c"}},
                "c": {},
            },
        }
    )

    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("m", machine)
            await bs.create("m", "i")
            assert (await bs.send("m", "i", "go")).value == "c"

    run(body)
    [(snapshot,)] = db.rows("SELECT snapshot FROM instances")
    assert json.loads(snapshot)["value"] == "c"


def test_persistent_child_completion_reaches_the_parent(db: Target) -> None:
    child = setup().create_machine(
        {
            "initial": "working",
            "context": lambda input: {"job": input["job"]},
            "states": {
                "working": {"on": {"finish": "done"}},
                "done": {"type": "final"},
            },
            "output": lambda c, e: {"job": c["job"], "ok": True},
        }
    )
    parent = setup(
        actors={"worker": persistent("worker", instance=lambda input: f"job-{input['job']}")}
    ).create_machine(
        {
            "initial": "waiting",
            "context": {},
            "states": {
                "waiting": {
                    "invoke": {
                        "id": "w",
                        "src": "worker",
                        "input": {"job": 7},
                        "onDone": {
                            "target": "finished",
                            "actions": assign({"result": lambda c, e: e["output"]}),
                        },
                    }
                },
                "finished": {},
            },
        }
    )

    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("worker", child)
            bs.deploy("boss", parent)
            state = await bs.create("boss", "b")
            assert state.value == "waiting"  # persistent children do not hold settling
            assert (await bs.get("worker", "job-7")).context == {"job": 7}
            await bs.send("worker", "job-7", "finish")

            async def finished() -> bool:
                return (await bs.get("boss", "b")).value == "finished"

            await eventually(finished)
            assert (await bs.get("boss", "b")).context == {"result": {"job": 7, "ok": True}}

    run(body)


def test_subscribers_see_every_committed_state_and_emits(db: Target) -> None:
    from backstate.chart import emit

    machine = setup().create_machine(
        {
            "initial": "a",
            "states": {
                "a": {"on": {"go": {"target": "b", "actions": emit({"type": "moved"})}}},
                "b": {"on": {"go": "a"}},
            },
        }
    )

    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("m", machine)
            emitted: list[Any] = []
            bs.on_emit(lambda key, event: emitted.append((key, event)))
            await bs.create("m", "i")
            seen: list[Any] = []

            async def watch() -> None:
                async for state in bs.subscribe("m", "i"):
                    seen.append((state.seq, state.value))
                    if len(seen) == 4:
                        return

            watcher = asyncio.create_task(watch())
            await asyncio.sleep(0.01)
            for _ in range(3):
                await bs.send("m", "i", "go")
            await asyncio.wait_for(watcher, 2)
            assert seen == [(0, "a"), (1, "b"), (2, "a"), (3, "b")]
            assert emitted == [(("m", "i"), {"type": "moved"})] * 2

    run(body)


def test_send_settles_through_self_sends(db: Target) -> None:
    machine = setup().create_machine(
        {
            "initial": "a",
            "states": {
                "a": {
                    "on": {"go": {"target": "b", "actions": send_to("#_self", {"type": "next"})}}
                },
                "b": {"on": {"next": "c"}},
                "c": {},
            },
        }
    )

    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("m", machine)
            await bs.create("m", "i")
            assert (await bs.send("m", "i", "go")).value == "c"

    run(body)


def test_namespaces_keep_orgs_apart(db: Target) -> None:
    senders: list[Any] = []

    def allow_write(**kw: Any) -> bool:
        senders.append(kw["auth_context"].get("stateBackedSender"))
        return True

    sink = setup().create_machine(
        {
            "initial": "r",
            "context": {"n": 0},
            "states": {"r": {"on": {"hit": {"actions": assign({"n": lambda c, e: c["n"] + 1})}}}},
        }
    )
    source = setup().create_machine(
        {
            "initial": "s",
            "states": {
                "s": {
                    "on": {"go": {"actions": send_to(instance_ref("sink", "x"), {"type": "hit"})}}
                }
            },
        }
    )

    async def body() -> None:
        async with Backstate(db.open()) as bs:
            for org in ("orgA", "orgB"):
                bs.deploy(f"{org}.sink", sink, allow_write=allow_write)
                bs.deploy(f"{org}.source", source)
                await bs.create(f"{org}.sink", "x")
                await bs.create(f"{org}.source", "s")
            await bs.send("orgA.source", "s", "go")

            async def arrived() -> bool:
                return (await bs.get("orgA.sink", "x")).context["n"] == 1

            await eventually(arrived)
            assert (await bs.get("orgB.sink", "x")).context["n"] == 0
            assert senders == [
                {"machineName": "source", "machineInstanceName": "s", "orgId": "orgA"}
            ]
            with pytest.raises(InvalidRequest):
                await bs.create("a.b.c", "x")

    run(body)


def test_a_processor_bug_fails_callers_instead_of_hanging(db: Target) -> None:
    from backstate.runtime import Unavailable

    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("counter", counter())
            await bs.create("counter", "c")
            original = bs.processor.steps.process
            calls = {"n": 0}

            async def broken(entry: Any) -> None:
                calls["n"] += 1
                if calls["n"] == 1:
                    raise RuntimeError("a bug")
                await original(entry)

            bs.processor.steps.process = broken  # type: ignore[method-assign]
            with pytest.raises(Unavailable):
                await asyncio.wait_for(bs.send("counter", "c", "inc"), 5)
            assert (await asyncio.wait_for(bs.send("counter", "c", "inc"), 5)).context == {"n": 1}

    run(body)


def test_the_instance_cache_stays_bounded_and_never_drops_uncommitted_state(db: Target) -> None:
    relay = create_machine(
        {
            "initial": "idle",
            "context": {"n": 0},
            "states": {
                "idle": {
                    "on": {
                        "inc": {
                            "actions": [
                                assign({"n": lambda c, e: c["n"] + 1}),
                                send_to(lambda c, e: instance_ref("relay", e["to"]), "bump"),
                            ]
                        },
                        "bump": {"actions": assign({"n": lambda c, e: c["n"] + 1})},
                    }
                }
            },
        }
    )
    conflicts: list[Exception] = []

    async def body() -> None:
        store = db.open()
        commit = store.commit_async

        async def watched(batch: WriteBatch) -> Any:
            try:
                return await commit(batch)
            except SequenceConflict as exc:
                conflicts.append(exc)
                raise

        store.commit_async = watched  # type: ignore[method-assign]
        async with Backstate(store) as bs:
            bs.deploy("relay", relay)
            bs.processor.cache_size = 3
            names = [f"r{i}" for i in range(12)]
            for name in names:
                await bs.create("relay", name)
            for name in names:  # reads alone used to grow the cache without bound
                await bs.get("relay", name)
            assert len(bs.processor.entries) <= 3
            # Messages (work without a waiting caller) to many more instances than the
            # cache holds, and their results read back.
            for round_ in range(3):
                await asyncio.gather(
                    *(
                        bs.send("relay", n, {"type": "inc", "to": names[(i + 1) % 12]})
                        for i, n in enumerate(names)
                    )
                )

                async def all_bumped(expected: int = 2 * (round_ + 1)) -> bool:
                    states = [await bs.get("relay", n) for n in names]
                    return all(s.context["n"] == expected for s in states)

                await eventually(all_bumped)
            assert len(bs.processor.entries) <= 3 + 1
            # The rule that keeps this safe: an idle instance whose round is not yet
            # committed stays (a reload would read the state before that round).
            processor = bs.processor
            key = next(iter(processor.entries))
            processor.uncommitted[key] = 1
            processor._evict(0)
            assert list(processor.entries) == [key]
            del processor.uncommitted[key]
            processor._evict(0)
            assert not processor.entries

    run(body)
    assert conflicts == []


def test_a_duplicate_create_is_refused_only_once_the_first_is_committed(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("counter", counter())

            async def get_or_create() -> Any:
                # State Backed's client: create, and on a conflict read what exists.
                try:
                    return await bs.create("counter", "same")
                except Conflict:
                    return await bs.get("counter", "same")

            states = await asyncio.gather(*(get_or_create() for _ in range(5)))
            assert {s.seq for s in states} == {0}

    run(body)
