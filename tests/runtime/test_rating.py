"""The headless rating example (examples/rating.py) on the durable runtime: rating
instances message the aggregate named after the item; the aggregate's authorizer admits
only genuine rating instances; failed messages are retried, then dead-lettered."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from backstate.chart import send_to, setup
from backstate.runtime import MAX_ATTEMPTS, Backstate, Forbidden, SimulatedClock, instance_ref
from examples import rating as r

RATING, AGG = r.RATING_MACHINE, r.AGGREGATE_MACHINE
ITEM = "item1"
ALICE = {"sub": "alice"}
BACKOFF_MS = 1000 * (2**MAX_ATTEMPTS)  # past every retry (1 + 2 + 4 + 8 s)

# A machine that forges rating messages to an aggregate.
forger = setup().create_machine(
    {
        "initial": "s",
        "states": {
            "s": {
                "on": {
                    "forge": {
                        "actions": send_to(
                            instance_ref(AGG, ITEM),
                            {"type": "addToRating", "rating": 5, "count": 1},
                        )
                    }
                }
            }
        },
    }
)


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def deploy(bs: Backstate) -> None:
    bs.deploy(
        RATING,
        r.rating_machine,
        allow_read=r.allow_read_rating,
        allow_write=r.allow_write_rating,
    )
    bs.deploy(
        AGG,
        r.aggregate_machine,
        allow_read=r.allow_read_aggregate,
        allow_write=r.allow_write_aggregate,
    )
    bs.deploy("forger", forger)


async def aggregate(bs: Backstate, item: str = ITEM) -> dict[str, Any]:
    return (await bs.get(AGG, item, auth={})).public_context


async def aggregate_is(bs: Backstate, total: float, count: int, item: str = ITEM) -> None:
    """Wait until the aggregate shows these sums and that state is in its history."""

    async def check() -> bool:
        state = await bs.get(AGG, item)
        if state.public_context != {"totalRating": total, "count": count}:
            return False
        # get() may run ahead of the commit (see test_get_never_runs_ahead_of_history).
        return (await bs.history(AGG, item, after=state.seq - 1))[-1:] != []

    await until(check)


async def rate(bs: Backstate, rater: str, rating: float, item: str = ITEM) -> Any:
    return await bs.send(
        RATING,
        r.rating_instance_name(rater, item),
        {"type": "rate", "item": item, "rater": rater, "rating": rating},
        auth={"sub": rater},
    )


async def new_rating(bs: Backstate, rater: str, item: str = ITEM) -> Any:
    return await bs.create(
        RATING,
        r.rating_instance_name(rater, item),
        context=r.rating_context(rater, item),
        auth={"sub": rater},
    )


async def dead_letters(bs: Backstate, n: int) -> None:
    async def check() -> bool:
        return len(await bs.dead_letters()) == n

    await until(check)


def test_rate_then_rerate_sends_the_delta(tmp_path: Path) -> None:
    async def body() -> None:
        async with Backstate(tmp_path / "r.db", clock=SimulatedClock(0)) as bs:
            deploy(bs)
            await bs.create(AGG, ITEM, context=r.aggregate_context(ITEM), auth={})
            await new_rating(bs, "alice")
            state = await rate(bs, "alice", 4)
            assert state.value == "rated"
            assert state.public_context == {"rating": 4}
            await aggregate_is(bs, 4, 1)

            state = await rate(bs, "alice", 2)
            assert state.public_context == {"rating": 2}
            await aggregate_is(bs, 2, 1)

            await new_rating(bs, "bob")
            await rate(bs, "bob", 9)  # clamped to 5
            await aggregate_is(bs, 7, 2)
            await rate(bs, "bob", -3)  # clamped to 0: delta -5
            await aggregate_is(bs, 2, 2)

            events = [h.event for h in await bs.history(AGG, ITEM)][1:]
            assert events == [
                {"type": "addToRating", "rating": 4, "count": 1},
                {"type": "addToRating", "rating": -2, "count": 0},
                {"type": "addToRating", "rating": 5, "count": 1},
                {"type": "addToRating", "rating": -5, "count": 0},
            ]
            assert await bs.dead_letters() == []

    run(body)


def test_rating_authorizers(tmp_path: Path) -> None:
    async def body() -> None:
        async with Backstate(tmp_path / "r.db", clock=SimulatedClock(0)) as bs:
            deploy(bs)
            with pytest.raises(Forbidden):  # creating someone else's rating
                await bs.create(
                    RATING,
                    "alice-item1",
                    context=r.rating_context("alice", ITEM),
                    auth={"sub": "bob"},
                )
            with pytest.raises(Forbidden):  # the name does not match rater and item
                await bs.create(
                    RATING, "alice-item2", context=r.rating_context("alice", ITEM), auth=ALICE
                )
            with pytest.raises(Forbidden):  # a client creating another item's aggregate
                await bs.create(AGG, "other", context=r.aggregate_context(ITEM), auth={})
            await bs.create(AGG, ITEM, context=r.aggregate_context(ITEM), auth={})
            with pytest.raises(Forbidden):  # clients cannot add to the aggregate directly
                await bs.send(AGG, ITEM, {"type": "addToRating", "rating": 5, "count": 1}, auth={})
            await new_rating(bs, "alice")
            with pytest.raises(Forbidden):  # bob rating as alice
                await bs.send(
                    RATING,
                    "alice-item1",
                    {"type": "rate", "item": ITEM, "rater": "alice", "rating": 1},
                    auth={"sub": "bob"},
                )
            with pytest.raises(Forbidden):  # the event claims another rater
                await bs.send(
                    RATING,
                    "alice-item1",
                    {"type": "rate", "item": ITEM, "rater": "bob", "rating": 1},
                    auth=ALICE,
                )
            with pytest.raises(Forbidden):  # only alice reads her rating
                await bs.get(RATING, "alice-item1", auth={"sub": "bob"})
            assert (await bs.get(RATING, "alice-item1", auth=ALICE)).value == "unrated"
            assert await aggregate(bs) == {"totalRating": 0, "count": 0}

    run(body)


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param("machine", id="another-machine"),
        pytest.param("suffix", id="wrong-instance-suffix"),
    ],
)
def test_forged_senders_are_rejected_then_dead_lettered(tmp_path: Path, forge: str) -> None:
    clock = SimulatedClock(0)

    async def body() -> None:
        async with Backstate(tmp_path / "r.db", clock=clock) as bs:
            deploy(bs)
            await bs.create(AGG, ITEM, context=r.aggregate_context(ITEM), auth={})
            if forge == "machine":
                await bs.create("forger", "alice-item1")
                await bs.send("forger", "alice-item1", "forge")
                sender = "forger/alice-item1"
            else:
                # A rating instance whose name is for another item, but whose context
                # points at ITEM (created without auth, so its own authorizer is skipped).
                await bs.create(RATING, "mallory-item2", context=r.rating_context("mallory", ITEM))
                await bs.send(RATING, "mallory-item2", {"type": "rate", "item": ITEM, "rating": 5})
                sender = f"{RATING}/mallory-item2"
            # A genuine rating from another sender still goes through meanwhile.
            await new_rating(bs, "alice")
            await rate(bs, "alice", 3)
            await aggregate_is(bs, 3, 1)

            for _ in range(MAX_ATTEMPTS + 1):
                await asyncio.sleep(0.05)
                clock.advance(BACKOFF_MS)
            await dead_letters(bs, 1)
            [letter] = await bs.dead_letters()
            assert (letter.machine, letter.instance, letter.sender) == (AGG, ITEM, sender)
            assert letter.attempts == MAX_ATTEMPTS
            assert "rejected-by-machine-authorizer" in letter.reason
            assert letter.event == {"type": "addToRating", "rating": 5, "count": 1}
            assert await aggregate(bs) == {"totalRating": 3, "count": 1}

    run(body)


def test_forged_sender_is_refused_on_first_delivery(tmp_path: Path) -> None:
    """The part of the forged-sender flow that does not depend on retries."""
    clock = SimulatedClock(0)

    async def body() -> None:
        async with Backstate(tmp_path / "r.db", clock=clock) as bs:
            deploy(bs)
            await bs.create(AGG, ITEM, context=r.aggregate_context(ITEM), auth={})
            await bs.create("forger", "f")
            await bs.send("forger", "f", "forge")
            await new_rating(bs, "alice")
            await rate(bs, "alice", 3)
            await aggregate_is(bs, 3, 1)
            await asyncio.sleep(0.1)
            assert await aggregate(bs) == {"totalRating": 3, "count": 1}
            assert [h.event["type"] for h in await bs.history(AGG, ITEM)] == [
                "xstate.init",
                "addToRating",
            ]

    run(body)


def test_message_to_a_missing_aggregate_is_retried_until_it_exists(tmp_path: Path) -> None:
    clock = SimulatedClock(0)

    async def body() -> None:
        async with Backstate(tmp_path / "r.db", clock=clock) as bs:
            deploy(bs)
            await new_rating(bs, "alice")
            state = await rate(bs, "alice", 4)
            assert state.value == "rated"
            await asyncio.sleep(0.1)
            assert await bs.dead_letters() == []
            await bs.create(AGG, ITEM, context=r.aggregate_context(ITEM), auth={})
            assert await aggregate(bs) == {"totalRating": 0, "count": 0}
            clock.advance(BACKOFF_MS)
            await aggregate_is(bs, 4, 1)
            assert await bs.dead_letters() == []

    run(body)


def test_message_to_a_missing_aggregate_is_retried_in_real_time(tmp_path: Path) -> None:
    """The same with the system clock: the first retry comes 1 s later."""

    async def body() -> None:
        async with Backstate(tmp_path / "r.db") as bs:
            deploy(bs)
            await new_rating(bs, "alice")
            await rate(bs, "alice", 4)
            await asyncio.sleep(0.1)
            await bs.create(AGG, ITEM, context=r.aggregate_context(ITEM), auth={})
            assert await aggregate(bs) == {"totalRating": 0, "count": 0}

            async def arrived() -> bool:
                return await aggregate(bs) == {"totalRating": 4, "count": 1}

            await until(arrived, seconds=5.0)
            assert await bs.dead_letters() == []

    run(body)


def test_get_never_runs_ahead_of_history(tmp_path: Path) -> None:
    async def body() -> None:
        async with Backstate(tmp_path / "r.db", clock=SimulatedClock(0)) as bs:
            deploy(bs)
            await bs.create(AGG, ITEM, context=r.aggregate_context(ITEM), auth={})
            await new_rating(bs, "alice")
            ahead = []
            for n in range(1, 31):
                await rate(bs, "alice", n % 6)
                # The aggregate's transition happens in a later round than the send.
                deadline = asyncio.get_running_loop().time() + 3
                while (state := await bs.get(AGG, ITEM)).seq < n:
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0)
                history = await bs.history(AGG, ITEM, after=state.seq - 1)
                if not history:
                    ahead.append(state.seq)
            assert ahead == []

    run(body)
