"""Implementations for cases ported from xstate packages/core/test/stateIn.test.ts."""

from backstate.chart import state_in

GUARDS = {"hasSelection": state_in("selected")}
