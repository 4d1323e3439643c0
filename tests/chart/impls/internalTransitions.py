"""Implementations for cases ported from xstate packages/core/test/internalTransitions.test.ts."""

from backstate.chart import assign


def _inc(key):
    return assign({key: lambda context, event: context[key] + 1})


_COUNTERS = [
    f"{prefix}{kind}"
    for kind in ("Entries", "Exits")
    for prefix in ("sourceState", "directDescendant", "deepDescendant")
]

ACTIONS = {f"inc{name[0].upper()}{name[1:]}": _inc(name) for name in _COUNTERS}
