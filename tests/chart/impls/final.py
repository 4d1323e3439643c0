"""Implementations for cases ported from xstate packages/core/test/final.test.ts."""

from typing import Any

from backstate.chart import assign, send_parent, setup

_log: list[Any] = []


def bind_log(log: list[Any]) -> None:
    global _log
    _log = log


def _child_exit_spy(context: Any, event: Any) -> None:
    _log.append("child exit")


def _child(final_entry: Any = None, root_exit: Any = None) -> Any:
    config: dict[str, Any] = {
        "initial": "start",
        "states": {
            "start": {"on": {"CANCEL": "canceled"}},
            "canceled": {"type": "final"},
        },
    }
    if final_entry is not None:
        config["states"]["canceled"]["entry"] = final_entry
    if root_exit is not None:
        config["exit"] = root_exit
    return setup(actions={"spy": _child_exit_spy}).create_machine(config)


_CANCELED = send_parent({"type": "CHILD_CANCELED"})

ACTIONS = {
    "saveEventType": assign({"events": lambda context, event: [*context["events"], event["type"]]}),
    "revealSecret": assign({"revealedSecret": lambda context, event: event["output"]["secret"]}),
}

ACTORS = {
    "childWithExitSpy": _child(final_entry=_CANCELED, root_exit="spy"),
    "childSendsOnFinalEntry": _child(final_entry=_CANCELED),
    "childSendsOnRootExit": _child(root_exit=_CANCELED),
}
