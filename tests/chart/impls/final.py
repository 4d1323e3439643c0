"""Implementations for cases ported from xstate packages/core/test/final.test.ts."""

from backstate.chart import assign

ACTIONS = {
    "saveEventType": assign({"events": lambda context, event: [*context["events"], event["type"]]}),
    "revealSecret": assign({"revealedSecret": lambda context, event: event["output"]["secret"]}),
}
