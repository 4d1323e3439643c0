"""Implementations for cases ported from xstate packages/core/test/transient.test.ts."""

from backstate.chart import assign, emit, setup

timer_machine = setup(
    guards={"durationLt1000": lambda context, event: context["duration"] < 1000},
).create_machine(
    {
        "initial": "initial",
        "context": lambda input: {"duration": input["duration"]},
        "states": {
            "initial": {
                "always": [
                    {"target": "finished", "guard": "durationLt1000"},
                    {"target": "active"},
                ]
            },
            "active": {},
            "finished": {"type": "final"},
        },
    }
)

GUARDS = {
    "notData": lambda context, event: not context["data"],
    "alwaysTrue": lambda context, event: True,
    "alwaysFalse": lambda context, event: False,
    "hourLt12": lambda context, event: context["hour"] < 12,
    "hourLt18": lambda context, event: context["hour"] < 18,
    "countGt0": lambda context, event: context["count"] > 0,
    "countLt5": lambda context, event: context["count"] < 5,
    "isWhatever": lambda context, event: event["type"] == "WHATEVER",
    "isEVENT": lambda context, event: event["type"] == "EVENT",
}

ACTIONS = {
    "increment": assign({"count": lambda context, event: context["count"] + 1}),
    "saveEvent": assign({"seen": lambda context, event: [*context["seen"], dict(event)]}),
    "spyCounter": emit(lambda context, event: {"type": "spy", "counter": context["counter"]}),
    "incrementCounter": assign({"counter": lambda context, event: context["counter"] + 1}),
}

ACTORS = {"timerMachine": timer_machine}
