"""The email-automation example (examples/email_automation.py) on the durable runtime:
a real SQLite file, a simulated clock, durable timers and the sendEmail service rule."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from backstate.runtime import Backstate, Forbidden, InstanceState, SimulatedClock
from examples import email_automation as ea
from examples.email_automation import (
    ASK_FOR_TESTIMONIAL,
    CREATE_DOCUMENT,
    FOLLOW_UP_WITH_TEAMMATES,
    INVITE_TEAMMATES,
    PUBLISH_DOCUMENT,
    REENGAGE_USER,
    SHARE_DOCUMENT,
    UPGRADE_TO_PAID_PLAN,
    WARN_ABOUT_TRIAL_END,
    WELCOME,
)

M = ea.MACHINE_NAME
USER = "u1"
EMAIL = "u1@example.com"
AUTH = {"sub": USER, "email": EMAIL}
DAY = ea.days(1)


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


async def until(
    bs: Backstate, check: Callable[[InstanceState], bool], seconds: float = 3.0
) -> InstanceState:
    """Poll the instance until ``check`` holds (timers and services run on the loop)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        state = await bs.get(M, USER)
        if check(state):
            return state
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached; state {state.value} {state.context}")
        await asyncio.sleep(0.01)


async def history_types(bs: Backstate, state: InstanceState, after: int = -1) -> list[str]:
    """Event types in the history up to ``state``, once ``state`` is committed (get() may
    run ahead of the commit; see test_rating.test_get_never_runs_ahead_of_history)."""
    deadline = asyncio.get_running_loop().time() + 3.0
    while True:
        rows = await bs.history(M, USER, after=after, limit=1000)
        if rows and rows[-1].seq >= state.seq:
            return [h.event["type"] for h in rows]
        assert asyncio.get_running_loop().time() < deadline, "state never committed"
        await asyncio.sleep(0.01)


def sender(state: InstanceState) -> Any:
    return state.value["run"]["emailSender"] if isinstance(state.value, dict) else None


async def step(bs: Backstate, clock: SimulatedClock, ms: int, reached: str) -> InstanceState:
    """Advance the clock and wait until the email sender reaches ``reached``."""
    clock.advance(ms)
    return await until(bs, lambda s: sender(s) == reached)


def deploy(bs: Backstate) -> None:
    bs.deploy(M, ea.machine, allow_read=ea.allow_read, allow_write=ea.allow_write)


async def create(bs: Backstate) -> InstanceState:
    return await bs.create(M, USER, context=ea.initial_context(EMAIL), auth=AUTH)


async def send(bs: Backstate, *events: str) -> InstanceState:
    state = None
    for event in events:
        state = await bs.send(M, USER, {"type": event}, auth=AUTH)
    assert state is not None
    return state


@pytest.fixture(autouse=True)
def _clear_outbox() -> None:
    ea.OUTBOX.clear()


def test_test_time_durations() -> None:
    assert ea.WELCOME_EMAIL_DELAY == 10_000
    assert ea.EMAIL_GAPS == (60_000, 60_000, 120_000, 180_000, 180_000, 240_000)
    assert (ea.FREE_TRIAL_WARNING_PERIOD, ea.FREE_TRIAL_WARNING_REMAINDER_PERIOD) == (
        720_000,
        120_000,
    )


def test_welcome_email_after_the_delay(tmp_path: Path) -> None:
    clock = SimulatedClock(0)

    async def body() -> None:
        async with Backstate(tmp_path / "ea.db", clock=clock) as bs:
            deploy(bs)
            state = await create(bs)
            assert sender(state) == "start"
            assert state.context["sentEmails"] == []
            clock.advance(ea.WELCOME_EMAIL_DELAY - 1)
            await asyncio.sleep(0.1)
            assert sender(await bs.get(M, USER)) == "start"
            assert ea.OUTBOX == []
            state = await step(bs, clock, 1, "welcomeSent")
            assert state.context["sentEmails"] == [WELCOME]
            assert ea.OUTBOX == [(EMAIL, WELCOME)]
            types = await history_types(bs, state)
            assert any(t.startswith("xstate.after.welcomeEmailDelay.") for t in types)
            assert "xstate.done.actor.sendWelcomeEmail" in types

    run(body)


def test_emails_follow_what_the_user_does_through_to_completion(tmp_path: Path) -> None:
    clock = SimulatedClock(0)

    async def body() -> None:
        async with Backstate(tmp_path / "ea.db", clock=clock) as bs:
            deploy(bs)
            await create(bs)
            await step(bs, clock, ea.WELCOME_EMAIL_DELAY, "welcomeSent")  # t = 10 s
            state = await step(bs, clock, DAY, "email1Sent")  # t = 70 s
            assert state.context["sentEmails"] == [WELCOME, CREATE_DOCUMENT]

            state = await send(bs, "createdDocument", "createdOrganization")
            assert state.context["documentCreated"] and state.context["orgCreated"]
            assert state.context["orgPlanStatus"] == "free"
            state = await step(bs, clock, DAY, "email2Sent")  # t = 130 s
            assert state.context["sentEmails"][-1] == SHARE_DOCUMENT

            await send(bs, "sharedDocument")
            state = await step(bs, clock, 2 * DAY, "email3Sent")  # t = 250 s
            assert state.context["sentEmails"][-1] == PUBLISH_DOCUMENT

            state = await send(bs, "publishedDocument")
            assert state.value["run"]["userState"]["newUser"]["documentActivity"] == (
                "completedDocument"
            )
            state = await step(bs, clock, 3 * DAY, "email4Sent")  # t = 430 s
            assert state.context["sentEmails"][-1] == INVITE_TEAMMATES

            await send(bs, "invitedUser")
            state = await step(bs, clock, 3 * DAY, "email5Sent")  # t = 610 s
            assert state.context["sentEmails"][-1] == FOLLOW_UP_WITH_TEAMMATES

            await send(bs, "acceptedInvitation")
            # The trial warning falls due 12 "days" after the org was created (t = 790 s).
            clock.advance(3 * DAY)
            state = await until(bs, lambda s: s.context["orgPlanStatus"] == "trial-ending")
            assert sender(state) == "email5Sent"
            state = await step(bs, clock, DAY, "Complete")  # t = 850 s
            assert state.context["sentEmails"] == [
                WELCOME,
                CREATE_DOCUMENT,
                SHARE_DOCUMENT,
                PUBLISH_DOCUMENT,
                INVITE_TEAMMATES,
                FOLLOW_UP_WITH_TEAMMATES,
                WARN_ABOUT_TRIAL_END,
            ]
            assert [(EMAIL, t) for t in state.context["sentEmails"]] == ea.OUTBOX
            assert state.value != "complete"

            # Upgrading finishes the organization, so the user becomes a supporter and
            # the whole parallel run is done.
            state = await send(bs, "upgradedPlan")
            assert state.value == "complete"
            assert state.context["isSupporter"] is True
            assert state.context["orgPlanStatus"] == "paid"

            # Nothing is scheduled any more.
            clock.advance(100 * DAY)
            await asyncio.sleep(0.1)
            assert (await bs.get(M, USER)).seq == state.seq

            # At the root, reset re-enters .run: the campaign starts over.
            state = await send(bs, "reset")
            assert sender(state) == "start"
            assert state.context["sentEmails"] == []
            assert state.context["isSupporter"] is False
            assert state.context["documentCreated"] is False
            assert state.context["orgCreated"] is False
            state = await step(bs, clock, ea.WELCOME_EMAIL_DELAY, "welcomeSent")
            assert state.context["sentEmails"] == [WELCOME]

    run(body)


def test_plan_timers_and_the_at_most_once_rule(tmp_path: Path) -> None:
    clock = SimulatedClock(0)

    async def body() -> None:
        async with Backstate(tmp_path / "ea.db", clock=clock) as bs:
            deploy(bs)
            await create(bs)
            await send(bs, "createdOrganization")  # t = 0: trial ends at 720 s / 840 s
            await step(bs, clock, ea.WELCOME_EMAIL_DELAY, "welcomeSent")  # 10 s
            state = await step(bs, clock, DAY, "email1Sent")  # 70 s
            assert state.context["sentEmails"][-1] == CREATE_DOCUMENT
            # create-document was sent already: the rule moves on.
            state = await step(bs, clock, DAY, "email2Sent")  # 130 s
            assert state.context["sentEmails"][-1] == INVITE_TEAMMATES
            state = await step(bs, clock, 2 * DAY, "email3Sent")  # 250 s
            assert state.context["sentEmails"][-1] == UPGRADE_TO_PAID_PLAN
            expected = [WELCOME, CREATE_DOCUMENT, INVITE_TEAMMATES, UPGRADE_TO_PAID_PLAN]
            # Every applicable email went out already: the next steps send nothing.
            state = await step(bs, clock, 3 * DAY, "email4Sent")  # 430 s
            assert state.context["sentEmails"] == expected
            state = await step(bs, clock, 3 * DAY, "email5Sent")  # 610 s
            assert state.context["sentEmails"] == expected
            assert state.context["orgPlanStatus"] == "free"
            assert len(ea.OUTBOX) == len(expected)

            clock.advance(ea.FREE_TRIAL_WARNING_PERIOD - 610_000 - 1)  # 719.999 s
            await asyncio.sleep(0.1)
            assert (await bs.get(M, USER)).context["orgPlanStatus"] == "free"
            clock.advance(1)  # 720 s
            state = await until(bs, lambda s: s.context["orgPlanStatus"] == "trial-ending")
            plan = state.value["run"]["userState"]["newUser"]["organizationActivity"]
            assert plan["createdOrganization"]["planStatus"] == "trialAlmostOver"
            clock.advance(ea.FREE_TRIAL_WARNING_REMAINDER_PERIOD)  # 840 s
            state = await until(bs, lambda s: s.context["orgPlanStatus"] == "trial-ended")

            # Email 6 at 850 s: the trial has ended, so re-engage (the warning is moot).
            state = await step(bs, clock, 10_000, "Complete")
            assert state.context["sentEmails"] == [*expected, REENGAGE_USER]

            state = await send(bs, "upgradedPlan")
            plan = state.value["run"]["userState"]["newUser"]["organizationActivity"]
            assert plan["createdOrganization"]["planStatus"] == "paidPlan"
            assert state.context["orgPlanStatus"] == "paid"

    run(body)


def test_supporters_are_asked_for_a_testimonial_once(tmp_path: Path) -> None:
    clock = SimulatedClock(0)

    async def body() -> None:
        async with Backstate(tmp_path / "ea.db", clock=clock) as bs:
            deploy(bs)
            await create(bs)
            state = await send(
                bs,
                "createdDocument",
                "sharedDocument",
                "publishedDocument",
                "createdOrganization",
                "invitedUser",
                "acceptedInvitation",
                "upgradedPlan",
            )
            assert state.value["run"]["userState"] == "userIsSupporter"
            assert state.context["isSupporter"] is True
            await step(bs, clock, ea.WELCOME_EMAIL_DELAY, "welcomeSent")
            state = await step(bs, clock, DAY, "email1Sent")
            assert state.context["sentEmails"] == [WELCOME, ASK_FOR_TESTIMONIAL]
            state = await step(bs, clock, DAY, "email2Sent")
            assert state.context["sentEmails"] == [WELCOME, ASK_FOR_TESTIMONIAL]
            assert ea.OUTBOX == [(EMAIL, WELCOME), (EMAIL, ASK_FOR_TESTIMONIAL)]

    run(body)


def test_reset_restarts_the_campaign_and_its_timers(tmp_path: Path) -> None:
    clock = SimulatedClock(0)

    async def body() -> None:
        async with Backstate(tmp_path / "ea.db", clock=clock) as bs:
            deploy(bs)
            await create(bs)
            await send(bs, "createdOrganization", "createdDocument")  # t = 0
            await step(bs, clock, ea.WELCOME_EMAIL_DELAY, "welcomeSent")  # 10 s
            state = await step(bs, clock, DAY, "email1Sent")  # 70 s
            assert state.context["sentEmails"] == [WELCOME, SHARE_DOCUMENT]
            seq = state.seq

            state = await send(bs, "reset")  # 70 s
            assert state.seq == seq + 1
            assert sender(state) == "start"
            activity = state.value["run"]["userState"]["newUser"]
            assert activity == {
                "documentActivity": "noDocuments",
                "organizationActivity": "noOrganization",
            }
            ctx = state.context
            assert ctx["sentEmails"] == []
            assert (ctx["documentCreated"], ctx["orgCreated"], ctx["orgPlanStatus"]) == (
                False,
                False,
                None,
            )

            # The welcome timer starts again; nothing fires before it.
            clock.advance(ea.WELCOME_EMAIL_DELAY - 1)
            await asyncio.sleep(0.1)
            assert (await bs.get(M, USER)).seq == state.seq
            state = await step(bs, clock, 1, "welcomeSent")  # 80 s
            assert state.context["sentEmails"] == [WELCOME]
            # The old email-2 timer (due at 130 s) was cancelled: at 130 s nothing
            # happens; email 1 goes out a day after the new welcome (140 s).
            clock.advance(DAY - 10_000)  # 130 s
            await asyncio.sleep(0.1)
            assert sender(await bs.get(M, USER)) == "welcomeSent"
            state = await step(bs, clock, 10_000, "email1Sent")  # 140 s
            # The document flags were reset, so the rule starts from the beginning.
            assert state.context["sentEmails"] == [WELCOME, CREATE_DOCUMENT]

            # The old trial timer (720 s after the first org) was cancelled too.
            clock.advance(ea.FREE_TRIAL_WARNING_PERIOD)
            await until(bs, lambda s: sender(s) == "email2Sent")
            state = await bs.get(M, USER)
            assert state.context["orgPlanStatus"] is None
            types = await history_types(bs, state, after=seq)
            assert not [t for t in types if "freeTrialWarningPeriod" in t]
            # Only the new email-2 timer fired (at 200 s), not the cancelled one.
            assert len([t for t in types if t.startswith("xstate.after.gap2.")]) == 1
            assert ea.OUTBOX.count((EMAIL, WELCOME)) == 2

    run(body)


def test_timers_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "ea.db"
    clocks = [SimulatedClock(0)]

    async def first() -> None:
        async with Backstate(db, clock=clocks[-1]) as bs:
            deploy(bs)
            await create(bs)

    async def second() -> None:
        clock = clocks[-1]
        async with Backstate(db, clock=clock) as bs:
            deploy(bs)  # redeploy, then start (async with)
            state = await step(bs, clock, ea.WELCOME_EMAIL_DELAY, "welcomeSent")  # 10 s
            assert state.context["sentEmails"] == [WELCOME]
            await send(bs, "createdDocument")

    async def third() -> None:
        clock = clocks[-1]
        async with Backstate(db, clock=clock) as bs:
            deploy(bs)
            # Email 1 fell due (70 s) while the process was down: it goes out at once.
            state = await until(bs, lambda s: sender(s) == "email1Sent")
            assert state.context["sentEmails"] == [WELCOME, SHARE_DOCUMENT]
            # The next timer counts from when email 1 was handled (75 s).
            clock.advance(DAY - 1)
            await asyncio.sleep(0.1)
            assert sender(await bs.get(M, USER)) == "email1Sent"
            state = await step(bs, clock, 1, "email2Sent")
            assert state.context["sentEmails"][-1] == PUBLISH_DOCUMENT

    run(first)
    clocks.append(SimulatedClock(clocks[-1].now_ms()))
    run(second)
    clocks.append(SimulatedClock(clocks[-1].now_ms() + DAY + 5_000))  # down until 75 s
    run(third)


def test_authorizers(tmp_path: Path) -> None:
    async def body() -> None:
        async with Backstate(tmp_path / "ea.db", clock=SimulatedClock(0)) as bs:
            deploy(bs)
            with pytest.raises(Forbidden):  # another user's instance
                await bs.create(M, USER, context=ea.initial_context(EMAIL), auth={"sub": "u2"})
            with pytest.raises(Forbidden):  # no valid email address
                await bs.create(M, USER, context=ea.initial_context("nobody"), auth=AUTH)
            await create(bs)
            assert (await bs.get(M, USER, auth=AUTH)).context["userEmail"] == EMAIL
            with pytest.raises(Forbidden):
                await bs.get(M, USER, auth={"sub": "u2"})
            with pytest.raises(Forbidden):
                await bs.send(M, USER, {"type": "createdDocument"}, auth={"sub": "u2"})
            assert (await bs.get(M, USER)).context["documentCreated"] is False
            state = await send(bs, "createdDocument")
            assert state.context["documentCreated"] is True

    run(body)
