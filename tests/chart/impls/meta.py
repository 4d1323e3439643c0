"""Implementations for cases ported from xstate packages/core/test/meta.test.ts."""

_log: list = []


def bind_log(log):
    global _log
    _log = log


def _recorder(name):
    def action(context, event):
        _log.append(name)

    return action


ACTIONS = {
    f"{kind}_{state}": _recorder(f"{kind}_{state}")
    for kind in ("enter", "exit")
    for state in ("green", "yellow", "red", "walk", "wait", "stop")
}
