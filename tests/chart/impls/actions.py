"""Implementations for cases ported from xstate packages/core/test/actions.test.ts.

XState observes custom actions with spies. Here such actions append what they received
(the event, the context, their params) to the case log, which the runner binds with
``bind_log``.
"""

import json

from backstate.chart import (
    assign,
    cancel,
    enqueue_actions,
    raise_,
    send_parent,
    send_to,
    setup,
)

_log: list = []


def bind_log(log):
    global _log
    _log = log


def record_event_type(context, event):
    _log.append(event["type"])


def record_count(context, event):
    _log.append(f"count={context['count']}")


def record_counter(context, event):
    _log.append(f"counter={context['counter']}")


def record_params(context, event, params):
    _log.append(json.dumps(params, sort_keys=True))


def _record_dynamic(params_fn):
    """Enqueue ``recordParams`` with dynamic params ``params_fn(context, event)``."""
    return enqueue_actions(
        lambda context, event, enqueue: enqueue({"type": "recordParams", "params": params_fn})
    )


def noop(context, event):
    return None


def spy(context, event):
    _log.append("spy")


def _append_call(name):
    return assign({"calls": lambda context, event: [*context["calls"], name]})


def _enqueue_names(*names):
    def collect(context, event, enqueue):
        for name in names:
            enqueue(name)

    return enqueue_actions(collect)


def _enqueue_if(guard):
    def collect(context, event, enqueue):
        if enqueue.check(guard):
            enqueue(assign({"count": lambda c, e: c["count"] + 1}))

    return enqueue_actions(collect)


def _enqueue_inc_record_inc(context, event, enqueue):
    enqueue(assign({"count": lambda c, e: c["count"] + 1}))
    enqueue({"type": "recordCount"})
    enqueue(assign({"count": lambda c, e: c["count"] + 1}))


def _enqueue_bound_raise(context, event, enqueue):
    enqueue.raise_({"type": "RAISED"})


def _enqueue_bound_assign(context, event, enqueue):
    enqueue.assign({"count": 42})


ACTIONS = {
    # Must not shadow the built-in assign when a config spells out {"type": "xstate.assign"}.
    "xstate.assign": assign({"assigned": "custom"}),
    "noop": noop,
    "recordEventType": record_event_type,
    "recordCount": record_count,
    "recordCounter": record_counter,
    "recordParams": record_params,
    "recordWithDynamicParamsStuff100": _record_dynamic(lambda context, event: {"stuff": 100}),
    "recordWithDynamicParamsFromContext": _record_dynamic(
        lambda context, event: {"secret": context["secret"]}
    ),
    "recordWithDynamicParamsFromEvent": _record_dynamic(
        lambda context, event: {"secret": event["secret"]}
    ),
    "definedAction": assign({"count": lambda context, event: context["count"] + 1}),
    "updateContext": assign({"count": 10}),
    "assignParams": assign(lambda context, event, params: {"params": params}),
    "incrementCount": assign({"count": lambda context, event: context["count"] + 1}),
    "incrementCounter": assign({"counter": lambda context, event: context["counter"] + 1}),
    "forwardToMyChild": send_to("myChild", lambda context, event: event),
    "forwardToX": send_to("x", lambda context, event: event),
    "someAction": _append_call("someAction"),
    "otherAction": _append_call("otherAction"),
    "enqueueSomeAction": _enqueue_names("someAction"),
    "enqueueSomeAndOtherAction": _enqueue_names("someAction", "otherAction"),
    "enqueueSomeActionTwice": _enqueue_names("someAction", "someAction"),
    "enqueueParameterizedRecord": enqueue_actions(
        lambda context, event, enqueue: enqueue({"type": "recordParams", "params": {"answer": 42}})
    ),
    "enqueueFunction": enqueue_actions(lambda context, event, enqueue: enqueue(spy)),
    "enqueueRaiseRaised": enqueue_actions(
        lambda context, event, enqueue: enqueue(raise_({"type": "RAISED"}))
    ),
    "enqueueBoundRaiseRaised": enqueue_actions(_enqueue_bound_raise),
    "enqueueBoundAssign42": enqueue_actions(_enqueue_bound_assign),
    "enqueueIfAlwaysTrue": _enqueue_if("alwaysTrue"),
    "enqueueIfParamsMax100": _enqueue_if({"type": "paramsAreMax100", "params": {"max": 100}}),
    "enqueueIncRecordInc": enqueue_actions(_enqueue_inc_record_inc),
    "sendCountEventToChild": send_to(
        "child", lambda context, event: {"type": "EVENT", "count": context["count"]}
    ),
    "sendEventToChildNamedByEvent": send_to(
        lambda context, event: event["value"], {"type": "EVENT"}
    ),
    "raiseRaisedFromExpression": raise_(lambda context, event: {"type": "RAISED"}),
    "raiseContextEventType": raise_(lambda context, event: {"type": context["eventType"]}),
}

GUARDS = {
    "alwaysTrue": lambda context, event: True,
    "paramsAreMax100": lambda context, event, params: params == {"max": 100},
}


def _delayed_event_child(child_id, reply, with_cancel):
    on = {"event": {"actions": [send_parent({"type": reply})]}}
    if with_cancel:
        on["cancel"] = {"actions": [cancel("sameId")]}
    return setup().create_machine(
        {
            "id": child_id,
            "entry": [raise_({"type": "event"}, delay=100, id="sameId")],
            "on": on,
        }
    )


def _send_parent_with_params(context, event, enqueue, params):
    enqueue(send_parent(params))


def _enqueue_send_parent(context, event, enqueue):
    enqueue.send_parent({"type": "PARENT_EVENT"})


ACTORS = {
    "childReachingFinal": setup().create_machine(
        {
            "exit": [send_parent({"type": "CHILD_ROOT_EXITED"})],
            "initial": "a",
            "states": {"a": {"type": "final", "exit": [send_parent({"type": "CHILD_A_EXITED"})]}},
        }
    ),
    "childSendingParentOnExit": setup().create_machine(
        {
            "id": "child",
            "initial": "active",
            "states": {"active": {"on": {"FINISH": "done"}}, "done": {"type": "final"}},
            "exit": [send_parent({"type": "CHILD_DONE"})],
        }
    ),
    "successChild": setup(
        guards={"valueIs42": lambda context, event: event["value"] == 42}
    ).create_machine(
        {
            "id": "child",
            "initial": "active",
            "states": {
                "active": {
                    "on": {
                        "EVENT": {
                            "actions": [send_parent({"type": "SUCCESS"})],
                            "guard": "valueIs42",
                        }
                    }
                }
            },
        }
    ),
    "childSendingParentWithParams": setup(
        actions={"mySendParent": enqueue_actions(_send_parent_with_params)}
    ).create_machine({"entry": {"type": "mySendParent", "params": {"type": "FOO"}}}),
    "childEnqueueSendParent": setup(
        actions={"sendToParent": enqueue_actions(_enqueue_send_parent)}
    ).create_machine({"entry": "sendToParent"}),
    # Acknowledges {"type": "EVENT"} (with count 42 when it carries a count).
    "ackChild": setup(
        guards={"countIs42": lambda context, event: event.get("count", 42) == 42}
    ).create_machine(
        {
            "initial": "waiting",
            "states": {
                "waiting": {
                    "on": {
                        "EVENT": {
                            "guard": "countIs42",
                            "actions": [send_parent({"type": "ACK"})],
                        }
                    }
                }
            },
        }
    ),
    "pongChild": setup().create_machine(
        {"on": {"PING": {"actions": [send_parent({"type": "PONG"})]}}}
    ),
    "foo": _delayed_event_child("foo", "FOO_GOT_EVENT", with_cancel=False),
    "fooWithCancel": _delayed_event_child("foo", "FOO_GOT_EVENT", with_cancel=True),
    "bar": _delayed_event_child("bar", "BAR_GOT_EVENT", with_cancel=False),
    "barWithCancel": _delayed_event_child("bar", "BAR_GOT_EVENT", with_cancel=True),
}
