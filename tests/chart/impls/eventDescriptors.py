"""Implementations for cases ported from xstate packages/core/test/eventDescriptors.test.ts."""

from backstate.chart import assign

GUARDS = {"alwaysFalse": lambda context, event: False}

ACTIONS = {"handleEvent": assign({"seen": lambda context, event: [*context["seen"], dict(event)]})}
