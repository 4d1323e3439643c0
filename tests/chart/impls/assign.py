"""Implementations for cases ported from xstate packages/core/test/assign.test.ts."""

from backstate.chart import assign

ACTIONS = {
    "incFn": assign(lambda context, event: {"count": context["count"] + 1}),
    "decProp": assign({"count": lambda context, event: context["count"] - 1}),
    "winProp": assign({"count": lambda context, event: 100, "foo": lambda context, event: "win"}),
    "winMix": assign({"count": lambda context, event: 100, "foo": "win"}),
    "winFn": assign(lambda context, event: {"count": 100, "foo": "win"}),
    "assignCountFromEvent": assign({"count": lambda context, event: event["value"]}),
    "incBy": assign(lambda context, event, params: {"count": context["count"] + params["by"]}),
    "incByProp": assign({"count": lambda context, event, params: context["count"] + params["by"]}),
    "saveParams": assign(lambda context, event, params: {"received": params}),
}
