"""Implementations for cases ported from xstate packages/core/test/emit.test.ts."""

from backstate.chart import emit, enqueue_actions


def _enqueue_emits(context, event, enqueue):
    enqueue.emit({"type": "emitted", "foo": "bar"})
    enqueue.emit({"type": "unknown"})


ACTIONS = {
    "enqueueEmits": enqueue_actions(_enqueue_emits),
    "emitCount": emit(lambda context, event: {"type": "emitted", "count": context["count"]}),
}
