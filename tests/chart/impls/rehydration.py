"""Implementations for cases ported from xstate packages/core/test/rehydration.test.ts."""

from backstate.chart import enqueue_actions, setup


def _record_event_type(context, event, enqueue):
    enqueue({"type": "record", "params": {"value": event["type"]}})


def failure(input):
    raise RuntimeError("failure")


ACTIONS = {"recordEventType": enqueue_actions(_record_event_type)}

ACTORS = {
    # XState's `createMachine({ type: 'final' })`: a child that is done as soon as it starts.
    "foo": setup().create_machine({"initial": "done", "states": {"done": {"type": "final"}}}),
    "failure": failure,
}
