"""Implementations for cases ported from xstate packages/core/test/after.test.ts."""


def always_true(context, event):
    return True


def my_delay(context, event):
    return context["delay"]


def some_delay(context, event):
    return event["delay"]


GUARDS = {"alwaysTrue": always_true}
DELAYS = {"myDelay": my_delay, "someDelay": some_delay}
