"""Email automation (State Backed example §8.4): a drip campaign as one durable instance
per user.

What it shows:

- a parallel ``run`` state with two halves: ``userState`` records what the user has done
  (documents and organizations, each a nested parallel state whose regions finish
  independently, and a free-trial plan whose status changes on durable timers), while
  ``emailSender`` walks a chain of durable timers and at each step invokes the
  ``sendEmail`` service;
- a *service rule*: ``sendEmail`` picks the most relevant email for what the user has
  done so far, first match wins, and never sends the same type twice (it reads
  ``sentEmails``; each ``onDone`` appends the type that was sent);
- ``reset`` events handled at several levels (each region resets itself; at the root,
  once the run is complete, ``reset`` re-enters ``.run``), and ``onDone`` of the
  parallel ``run`` moving the instance to ``complete``;
- authorizers: users read and write only their own instance (named after their user id,
  the ``sub`` claim) and must initialize it with an email address.

Durations use State Backed's "test time": days become minutes and minutes become
seconds, so the welcome email goes out 10 s after creation and the campaign lasts about
14 minutes. Set ``USE_TEST_TIME = False`` for real time.

The ``sendEmail`` service does no network I/O: it records the email it would send in
``OUTBOX`` and returns its type.

Deploy it::

    bs.deploy(MACHINE_NAME, machine, allow_read=allow_read, allow_write=allow_write)
    await bs.create(MACHINE_NAME, user_id, context=initial_context("me@example.com"),
                    auth={"sub": user_id, "email": "me@example.com"})
"""

from __future__ import annotations

from typing import Any

from backstate.chart import assign, setup

MACHINE_NAME = "email-automation"

# -- time -------------------------------------------------------------------------------

USE_TEST_TIME = True
SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
DAY_MS = 24 * 60 * MINUTE_MS


def days(n: float) -> int:
    """``n`` days in milliseconds (minutes under test time)."""
    return int(n * (MINUTE_MS if USE_TEST_TIME else DAY_MS))


def minutes(n: float) -> int:
    """``n`` minutes in milliseconds (seconds under test time)."""
    return int(n * (SECOND_MS if USE_TEST_TIME else MINUTE_MS))


WELCOME_EMAIL_DELAY = minutes(10)  # 10 s under test time
FREE_TRIAL_WARNING_PERIOD = days(12)  # freeTrial -> trialAlmostOver
FREE_TRIAL_WARNING_REMAINDER_PERIOD = days(2)  # trialAlmostOver -> trialEnded
# Waits between the welcome email and email 1, email 1 and email 2, ... email 5 and 6.
EMAIL_GAPS = (days(1), days(1), days(2), days(3), days(3), days(4))

# -- emails -----------------------------------------------------------------------------

WELCOME = "welcome"
ASK_FOR_TESTIMONIAL = "ask-for-testimonial"
WARN_ABOUT_TRIAL_END = "warn-about-impending-trial-end"
REENGAGE_USER = "reengage-user"
CREATE_DOCUMENT = "create-document"
SHARE_DOCUMENT = "share-document"
PUBLISH_DOCUMENT = "publish-document"
CREATE_ORGANIZATION = "create-organization"
INVITE_TEAMMATES = "invite-teammates"
FOLLOW_UP_WITH_TEAMMATES = "follow-up-with-teammates"
UPGRADE_TO_PAID_PLAN = "upgrade-to-paid-plan"

# (recipient, email type) for every email the service "sent", in order.
OUTBOX: list[tuple[str, str]] = []


def choose_email(context: dict[str, Any], welcome: bool = False) -> str | None:
    """The service rule: the first matching email type not sent yet, or None."""
    if welcome:
        return WELCOME
    sent = set(context["sentEmails"])

    def unsent(email: str) -> bool:
        return email not in sent

    plan = context["orgPlanStatus"]
    if context["isSupporter"] and unsent(ASK_FOR_TESTIMONIAL):
        return ASK_FOR_TESTIMONIAL
    if plan == "trial-ending" and unsent(WARN_ABOUT_TRIAL_END):
        return WARN_ABOUT_TRIAL_END
    if plan == "trial-ended" and unsent(REENGAGE_USER):
        return REENGAGE_USER
    if not context["documentCreated"] and unsent(CREATE_DOCUMENT):
        return CREATE_DOCUMENT
    if context["documentCreated"]:
        if not context["documentShared"] and unsent(SHARE_DOCUMENT):
            return SHARE_DOCUMENT
        if not context["documentPublished"] and unsent(PUBLISH_DOCUMENT):
            return PUBLISH_DOCUMENT
    if not context["orgCreated"] and unsent(CREATE_ORGANIZATION):
        return CREATE_ORGANIZATION
    if context["orgCreated"]:
        if not context["orgInvitationSent"] and unsent(INVITE_TEAMMATES):
            return INVITE_TEAMMATES
        if (
            context["orgInvitationSent"]
            and not context["orgInvitationAccepted"]
            and unsent(FOLLOW_UP_WITH_TEAMMATES)
        ):
            return FOLLOW_UP_WITH_TEAMMATES
        if plan == "free" and unsent(UPGRADE_TO_PAID_PLAN):
            return UPGRADE_TO_PAID_PLAN
    return None


async def send_email(input: dict[str, Any]) -> str | None:
    """The ``sendEmail`` service. Its input is the context when the step started (plus
    the ``welcome`` flag); it returns the type it sent, or None when nothing applies."""
    context = input["context"]
    email = choose_email(context, welcome=bool(input.get("welcome")))
    if email is not None:
        OUTBOX.append((context["userEmail"], email))  # a real app would call its mailer here
    return email


# -- the machine ------------------------------------------------------------------------


def initial_context(user_email: str = "") -> dict[str, Any]:
    return {
        "documentCreated": False,
        "documentShared": False,
        "documentPublished": False,
        "orgCreated": False,
        "orgInvitationSent": False,
        "orgInvitationAccepted": False,
        "orgPlanStatus": None,
        "isSupporter": False,
        "userEmail": user_email,
        "sentEmails": [],
    }


def _append_to_sent_emails(context: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    sent = event.get("output")
    return {**context, "sentEmails": [*context["sentEmails"], *([sent] if sent else [])]}


def _send_step(invoke_id: str, next_state: str, welcome: bool = False) -> dict[str, Any]:
    return {
        "invoke": {
            "id": invoke_id,
            "src": "sendEmail",
            "input": lambda context, event: {"context": context, "welcome": welcome},
            "onDone": {"target": next_state, "actions": "appendToSentEmails"},
        }
    }


def _email_sender() -> dict[str, Any]:
    states: dict[str, Any] = {
        "start": {
            "entry": assign({"sentEmails": []}),
            "after": {"welcomeEmailDelay": "sendWelcomeEmail"},
        },
        "sendWelcomeEmail": _send_step("sendWelcomeEmail", "welcomeSent", welcome=True),
    }
    waiting = "welcomeSent"
    for n in range(1, len(EMAIL_GAPS) + 1):
        states[waiting] = {"after": {f"gap{n}": f"sendEmail{n}"}}
        waiting = f"email{n}Sent" if n < len(EMAIL_GAPS) else "Complete"
        states[f"sendEmail{n}"] = _send_step(f"sendEmail{n}", waiting)
    states["Complete"] = {"type": "final"}
    return {"initial": "start", "states": states, "on": {"reset": ".start"}}


_PLAN = (
    "#email-automation.run.userState.newUser.organizationActivity.createdOrganization.planStatus"
)

_document_activity = {
    "description": "What the user has done with documents",
    "initial": "noDocuments",
    "states": {
        "noDocuments": {
            "entry": assign(
                {"documentShared": False, "documentCreated": False, "documentPublished": False}
            ),
            "on": {"createdDocument": "createdDocument"},
        },
        "createdDocument": {
            "type": "parallel",
            "entry": assign({"documentCreated": True}),
            "states": {
                "sharingStatus": {
                    "initial": "private",
                    "states": {
                        "private": {"on": {"sharedDocument": "shared"}},
                        "shared": {"type": "final", "entry": assign({"documentShared": True})},
                    },
                },
                "publishingStatus": {
                    "initial": "private",
                    "states": {
                        "private": {"on": {"publishedDocument": "published"}},
                        "published": {
                            "type": "final",
                            "entry": assign({"documentPublished": True}),
                        },
                    },
                },
            },
            "onDone": "completedDocument",
        },
        "completedDocument": {"type": "final"},
    },
    "on": {"reset": ".noDocuments"},
}

_organization_activity = {
    "description": "What the user has done with organizations",
    "initial": "noOrganization",
    "states": {
        "noOrganization": {
            "entry": assign(
                {"orgCreated": False, "orgPlanStatus": None, "orgInvitationSent": False}
            ),
            "on": {"createdOrganization": "createdOrganization"},
        },
        "createdOrganization": {
            "type": "parallel",
            "entry": assign({"orgCreated": True}),
            "states": {
                "invitationStatus": {
                    "initial": "noInvites",
                    "states": {
                        "noInvites": {"on": {"invitedUser": "invited"}},
                        "invited": {
                            "entry": assign({"orgInvitationSent": True}),
                            "on": {"acceptedInvitation": "invitationAccepted"},
                        },
                        "invitationAccepted": {
                            "type": "final",
                            "entry": assign({"orgInvitationAccepted": True}),
                        },
                    },
                },
                "planStatus": {
                    "initial": "freeTrial",
                    "states": {
                        "freeTrial": {
                            "entry": assign({"orgPlanStatus": "free"}),
                            "after": {"freeTrialWarningPeriod": f"{_PLAN}.trialAlmostOver"},
                        },
                        "trialAlmostOver": {
                            "entry": assign({"orgPlanStatus": "trial-ending"}),
                            "after": {"freeTrialWarningRemainderPeriod": f"{_PLAN}.trialEnded"},
                        },
                        "trialEnded": {"entry": assign({"orgPlanStatus": "trial-ended"})},
                        "paidPlan": {"type": "final", "entry": assign({"orgPlanStatus": "paid"})},
                    },
                    "on": {"upgradedPlan": ".paidPlan"},
                },
            },
            "onDone": "completedOrganization",
        },
        "completedOrganization": {"type": "final"},
    },
    "on": {"reset": ".noOrganization"},
}

machine = setup(
    actions={"appendToSentEmails": assign(_append_to_sent_emails)},
    actors={"sendEmail": send_email},
    delays={
        "welcomeEmailDelay": WELCOME_EMAIL_DELAY,
        "freeTrialWarningPeriod": FREE_TRIAL_WARNING_PERIOD,
        "freeTrialWarningRemainderPeriod": FREE_TRIAL_WARNING_REMAINDER_PERIOD,
        **{f"gap{n}": gap for n, gap in enumerate(EMAIL_GAPS, start=1)},
    },
).create_machine(
    {
        "id": "email-automation",
        "initial": "run",
        "context": lambda input: initial_context((input or {}).get("userEmail", "")),
        "states": {
            "run": {
                "type": "parallel",
                "states": {
                    "userState": {
                        "description": "What the user has done, along each dimension",
                        "entry": assign({"isSupporter": False}),
                        "initial": "newUser",
                        "states": {
                            "newUser": {
                                "type": "parallel",
                                "states": {
                                    "documentActivity": _document_activity,
                                    "organizationActivity": _organization_activity,
                                },
                                "onDone": "userIsSupporter",
                            },
                            "userIsSupporter": {
                                "type": "final",
                                "entry": assign({"isSupporter": True}),
                            },
                        },
                    },
                    "emailSender": _email_sender(),
                },
                "on": {"reset": ".userState.newUser"},
                "onDone": "complete",
            },
            "complete": {},
        },
        "on": {"reset": ".run"},
    }
)

# -- authorization ----------------------------------------------------------------------


def allow_read(*, machine_instance_name: str, auth_context: dict[str, Any], **_: Any) -> bool:
    """Users read only their own instance, named after their user id."""
    return auth_context.get("sub") == machine_instance_name


def allow_write(
    *,
    machine_instance_name: str,
    auth_context: dict[str, Any],
    context: dict[str, Any] | None,
    write_type: str,
    **_: Any,
) -> bool:
    """Users write only their own instance and must create it with a valid email
    address (an ``@`` in ``context.userEmail``), as the original's comment intends."""
    if auth_context.get("sub") != machine_instance_name:
        return False
    if write_type == "initialization":
        return "@" in str((context or {}).get("userEmail", ""))
    return True
