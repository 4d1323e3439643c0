"""Implementations for cases ported from xstate packages/core/test/state.test.ts."""

from backstate.chart import send_parent, setup


def noop(context, event):
    return None


ACTIONS = {"enter": noop, "doSomething": noop, "newAction": noop}

GUARDS = {
    "maybe": lambda context, event: True,
    "alwaysTrue": lambda context, event: True,
    "alwaysFalse": lambda context, event: False,
}

ACTORS = {
    # Announces itself to its parent as soon as it starts.
    "announcingChild": setup().create_machine({"entry": [send_parent({"type": "SPAWNED"})]}),
}
