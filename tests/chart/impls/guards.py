"""Implementations for cases ported from xstate packages/core/test/guards.test.ts.

Where XState checks a guard's params with a spy, the guard here returns True only when it
receives exactly the expected params, so the transition it guards is the observation.
"""

from backstate.chart import and_, not_, or_


def always_true(context, event):
    return True


def always_false(context, event):
    return False


def elapsed_less_than_100(context, event):
    return context["elapsed"] < 100


def elapsed_between_100_and_200(context, event):
    return 100 <= context["elapsed"] < 200


def is_emergency(context, event):
    return bool(event.get("isEmergency"))


def event_elapsed_over_200(context, event):
    return event["elapsed"] > 200


def event_elapsed_over_100(context, event):
    return event["elapsed"] > 100


def custom(context, event, params):
    if params["op"] == "greaterThan":
        return context[params["prop"]] + event["value"] > params["compare"]
    return False


def params_are_none(context, event, params):
    return params is None


def params_are_not_none(context, event, params):
    return params is not None


def params_are_42(context, event, params):
    return params == 42


def params_are_not_42(context, event, params):
    return params != 42


def params_are_stuff_100(context, event, params):
    return params == {"stuff": 100}


def params_are_secret_42(context, event, params):
    return params == {"secret": 42}


def params_are_not_secret_42(context, event, params):
    return params != {"secret": 42}


def params_are_secret_77(context, event, params):
    return params == {"secret": 77}


def greater_than_10(context, event, params):
    return params["value"] > 10


def one_plus_one_is_two(context, event):
    return 1 + 1 == 2


def secret_from_event(context, event):
    return {"secret": event.get("secret")}


GUARDS = {
    "alwaysTrue": always_true,
    "alwaysFalse": always_false,
    "truthy": always_true,
    "falsy": always_false,
    "elapsedLessThan100": elapsed_less_than_100,
    "elapsedBetween100And200": elapsed_between_100_and_200,
    "minTimeElapsed": elapsed_between_100_and_200,
    "isEmergency": is_emergency,
    "eventElapsedOver200": event_elapsed_over_200,
    "eventElapsedOver100": event_elapsed_over_100,
    "custom": custom,
    "paramsAreNone": params_are_none,
    "paramsAre42": params_are_42,
    "paramsAreStuff100": params_are_stuff_100,
    "paramsAreSecret42": params_are_secret_42,
    "paramsAreNotSecret42": params_are_not_secret_42,
    "paramsAreSecret77": params_are_secret_77,
    "otherParamsNotNone": params_are_not_none,
    "otherParamsNot42": params_are_not_42,
    "greaterThan10": greater_than_10,
    "onePlusOneIsTwo": one_plus_one_is_two,
    # A named guard may itself be a guard object whose params are a function (XState
    # resolves a non-function guard implementation recursively).
    "paramsAreStuff100WithDynamicParams": {
        "type": "paramsAreStuff100",
        "params": lambda context, event: {"stuff": 100},
    },
    "paramsAreSecret42FromContext": {
        "type": "paramsAreSecret42",
        "params": lambda context, event: {"secret": context["secret"]},
    },
    "paramsAreSecret77FromEvent": {"type": "paramsAreSecret77", "params": secret_from_event},
    # Referenced composite guards.
    "notInlineParamsNotNone": not_(params_are_not_none),
    "notOtherParamsNotNone": not_("otherParamsNotNone"),
    "notOtherParamsNot42": not_({"type": "otherParamsNot42", "params": 42}),
    "andWithInlineParamsAreNone": and_(["alwaysTrue", params_are_none]),
    "andWithStringParamsAreNone": and_(["paramsAreNone", always_true]),
    "andWithObjectParamsAre42": and_([{"type": "paramsAre42", "params": 42}, always_true]),
    "notParamsAreNotSecret42FromEvent": not_(
        {"type": "paramsAreNotSecret42", "params": secret_from_event}
    ),
    "andWithDynamicParamsFromEvent": and_(
        [{"type": "paramsAreSecret42", "params": secret_from_event}, always_true]
    ),
    "orWithDynamicParamsFromEvent": or_(
        [{"type": "paramsAreSecret42", "params": secret_from_event}, always_false]
    ),
    "referencedNotInlineFalse": not_(always_false),
    "referencedComposite": or_([always_false, not_("truthy"), and_([not_("falsy"), "truthy"])]),
    "ref1": "ref2",
    "ref2": "ref3",
    "ref3": always_true,
}
