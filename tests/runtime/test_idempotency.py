"""Idempotency keys on create and send: applied once, answered again, on SQLite and
PostgreSQL (the ``db`` fixture). The SIGKILL case against a real server is in
tests/server/test_idempotency.py."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from backstate.chart import assign, setup
from backstate.runtime import (
    Backstate,
    BackstateError,
    Conflict,
    IdempotencyKeyReused,
    InvalidRequest,
    SimulatedClock,
)
from tests.store.targets import Target

from .test_backstate import run

RAN: list[str] = []


def _observe(context: Any, event: Any) -> None:
    RAN.append(event["type"])


async def _work(input: Any) -> Any:
    await asyncio.sleep(0.05)
    return input


MACHINE = setup(actions={"observe": _observe}, actors={"work": _work}).create_machine(
    {
        "initial": "idle",
        "context": {"n": 0},
        "states": {
            "idle": {
                "on": {
                    "inc": {"actions": [assign({"n": lambda c, e: c["n"] + e["by"]}), "observe"]},
                    "work": "working",
                }
            },
            "working": {
                "invoke": {
                    "src": "work",
                    "input": lambda c, e: c["n"],
                    "onDone": {"target": "idle", "actions": assign({"done": True})},
                }
            },
        },
    }
)


async def _history(bs: Backstate, name: str) -> list[str]:
    return [row.event["type"] for row in await bs.history("m", name)]


def test_a_repeated_event_is_applied_once_and_answered_as_the_first(db: Target) -> None:
    RAN.clear()

    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("m", MACHINE)
            await bs.create("m", "i")
            first = await bs.send("m", "i", {"type": "inc", "by": 1}, idempotency_key="k1")
            await bs.send("m", "i", {"type": "inc", "by": 10})
            again = await bs.send("m", "i", {"by": 1, "type": "inc"}, idempotency_key="k1")
            assert (again.seq, again.context, again.ts) == (first.seq, {"n": 1}, first.ts)
            assert await _history(bs, "i") == ["xstate.init", "inc", "inc"]
            assert RAN == ["inc", "inc"]  # the custom action ran for the two applied

            with pytest.raises(IdempotencyKeyReused) as reused:
                await bs.send("m", "i", {"type": "inc", "by": 2}, idempotency_key="k1")
            assert (reused.value.status, reused.value.code) == (422, "idempotency-key-reused")
            # Keys belong to their instance: the same key elsewhere is a new request.
            await bs.create("m", "j")
            other = await bs.send("m", "j", {"type": "inc", "by": 1}, idempotency_key="k1")
            assert other.context == {"n": 1}
            assert (await bs.get("m", "i")).context == {"n": 11}

            for bad in ("", "x" * 256, "tab\there", "é"):
                with pytest.raises(InvalidRequest) as invalid:
                    await bs.send("m", "i", "inc", idempotency_key=bad)
                assert invalid.value.code == "invalid-idempotency-key"

        # After a restart the answer comes from the store: the state it had then.
        async with Backstate(db.open()) as bs:
            bs.deploy("m", MACHINE)
            again = await bs.send("m", "i", {"type": "inc", "by": 1}, idempotency_key='"k1"')
            assert (again.seq, again.context, again.value) == (first.seq, {"n": 1}, "idle")
            with pytest.raises(IdempotencyKeyReused):
                await bs.send("m", "i", {"type": "inc", "by": 3}, idempotency_key="k1")
            assert await _history(bs, "i") == ["xstate.init", "inc", "inc"]

    run(body)


def test_keys_are_read_from_the_store_off_the_event_loop_a_round_at_a_time(db: Target) -> None:
    """A key not in memory is read in a thread, with the round's others: a read on the
    loop would hold every other instance up for a round trip to the store."""
    reads: list[tuple[bool, int]] = []

    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("m", MACHINE)
            names = [f"i{n}" for n in range(40)]
            await asyncio.gather(*(bs.create("m", n) for n in names))
            store = bs.store
            one, many = store.idempotency_key, store.idempotency_keys
            loop_thread = threading.get_ident()

            def read_one(*args: Any) -> Any:
                reads.append((threading.get_ident() == loop_thread, 1))
                return one(*args)

            def read_many(wanted: Any) -> Any:
                reads.append((threading.get_ident() == loop_thread, len(wanted)))
                return many(wanted)

            store.idempotency_key, store.idempotency_keys = read_one, read_many  # type: ignore[method-assign]
            event = {"type": "inc", "by": 1}
            answers = await asyncio.gather(
                *(bs.send("m", n, event, idempotency_key=f"k-{n}") for n in names)
            )
            repeats = await asyncio.gather(
                *(bs.send("m", n, event, idempotency_key=f"k-{n}") for n in names)
            )
            assert [a.seq for a in answers] == [r.seq for r in repeats] == [1] * 40
        # After a restart nothing is in memory: the repeats are answered from the store.
        async with Backstate(db.open()) as bs:
            bs.deploy("m", MACHINE)
            store = bs.store
            many = store.idempotency_keys
            loop_thread = threading.get_ident()

            def read_after_restart(wanted: Any) -> Any:
                reads.append((threading.get_ident() == loop_thread, len(wanted)))
                return many(wanted)

            store.idempotency_keys = read_after_restart  # type: ignore[method-assign]
            again = await asyncio.gather(
                *(
                    bs.send("m", f"i{n}", {"type": "inc", "by": 1}, idempotency_key=f"k-i{n}")
                    for n in range(40)
                )
            )
            assert {a.seq for a in again} == {1}
            assert {(await bs.get("m", f"i{n}")).context["n"] for n in range(40)} == {1}

    asyncio.run(body())
    assert reads and not any(on_loop for on_loop, _ in reads), reads
    assert sum(n for _, n in reads) >= 80  # the first sends' keys, then the repeats'
    assert len(reads) < 40, reads  # a round's keys together, not one read per send


def test_concurrent_repeats_apply_once(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("m", MACHINE)
            await bs.create("m", "i")
            sends = [
                bs.send("m", "i", {"type": "inc", "by": 1}, idempotency_key="same")
                for _ in range(20)
            ]
            answers = await asyncio.gather(*sends, return_exceptions=True)
            states = [a for a in answers if not isinstance(a, BaseException)]
            refused = [a for a in answers if isinstance(a, BaseException)]
            assert all(isinstance(a, Conflict) for a in refused), refused
            assert {a.code for a in refused if isinstance(a, BackstateError)} <= {
                "idempotency-key-in-use"
            }
            assert states and {(s.seq, s.context["n"]) for s in states} == {(1, 1)}
            assert (await bs.get("m", "i")).context == {"n": 1}
            # Once answered, a repeat gets the answer.
            again = await bs.send("m", "i", {"type": "inc", "by": 1}, idempotency_key="same")
            assert (again.seq, again.context) == (1, {"n": 1})
            assert await _history(bs, "i") == ["xstate.init", "inc"]

    run(body)


def test_a_repeat_gets_the_settled_answer_and_a_create_is_made_once(db: Target) -> None:
    async def body() -> None:
        async with Backstate(db.open()) as bs:
            bs.deploy("m", MACHINE)
            created = await bs.create("m", "i", context={"n": 5}, idempotency_key="c")
            again = await bs.create("m", "i", context={"n": 5}, idempotency_key="c")
            assert (again.seq, again.context) == (created.seq, {"n": 5})
            with pytest.raises(IdempotencyKeyReused):
                await bs.create("m", "i", context={"n": 6}, idempotency_key="c")
            with pytest.raises(Conflict) as exists:
                await bs.create("m", "i", context={"n": 5})
            assert exists.value.code == "instance-exists"
            # The caller was answered once the service finished: that answer is the one.
            settled = await bs.send("m", "i", "work", idempotency_key="w")
            assert (settled.value, settled.context) == ("idle", {"n": 5, "done": True})
            await bs.send("m", "i", {"type": "inc", "by": 1})
            again = await bs.send("m", "i", "work", idempotency_key="w")
            assert (again.seq, again.context) == (settled.seq, settled.context)
        async with Backstate(db.open()) as bs:
            bs.deploy("m", MACHINE)
            again = await bs.send("m", "i", "work", idempotency_key="w")
            assert (again.seq, again.value, again.context) == (
                settled.seq,
                "idle",
                {"n": 5, "done": True},
            )
            again = await bs.create("m", "i", context={"n": 5}, idempotency_key="c")
            assert (again.seq, again.context) == (0, {"n": 5})
            history = await _history(bs, "i")
            assert history.count("work") == 1 and history.count("xstate.init") == 1

    run(body)


def test_keys_expire_after_the_retention_and_go_with_their_instance(db: Target) -> None:
    clock = SimulatedClock()

    async def body() -> None:
        async with Backstate(db.open(), clock=clock, idempotency_retention=60) as bs:
            bs.deploy("m", MACHINE)
            await bs.create("m", "i")
            await bs.send("m", "i", {"type": "inc", "by": 1}, idempotency_key="k")
            clock.advance(59_000)
            assert (await bs.send("m", "i", {"type": "inc", "by": 1}, idempotency_key="k")).seq == 1
            clock.advance(2_000)
            # Past the retention the key is new again, even with another request.
            later = await bs.send("m", "i", {"type": "inc", "by": 7}, idempotency_key="k")
            assert (later.seq, later.context) == (2, {"n": 8})
            await bs.delete("m", "i")
            await bs.create("m", "i")
            fresh = await bs.send("m", "i", {"type": "inc", "by": 7}, idempotency_key="k")
            assert (fresh.seq, fresh.context) == (1, {"n": 7})
        assert db.rows("SELECT count(*) FROM idempotency_keys") == [(1,)]

    run(body)
