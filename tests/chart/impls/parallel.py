"""Implementations for cases ported from xstate packages/core/test/parallel.test.ts."""

from backstate.chart import assign


def noop(context, event):
    return None


_NOOP_NAMES = [
    "selectNone",
    "selectActivity",
    "selectLink",
    "redraw",
    "emptyClipboard",
    "save",
    "noop",
    *(f"wak{n}{suffix}" for n in (1, 2) for suffix in ("enter", "exit")),
    *(f"wak{n}son{s}{suffix}" for n in (1, 2) for s in ("A", "B") for suffix in ("enter", "exit")),
]

ACTIONS = {
    **dict.fromkeys(_NOOP_NAMES, noop),
    "setValue": assign({"value": lambda context, event: event["value"]}),
    "logFoobaz": assign({"log": lambda context, event: [*context["log"], "entered foobaz"]}),
}
