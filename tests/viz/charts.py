"""Charts for the diagram tests beyond the examples: the shapes a diagram gets wrong
first (parallel regions inside compound states, deep and shallow history, self- and
internal transitions, every transition kind, hostile names)."""

from __future__ import annotations

from typing import Any

from backstate.chart import Machine, and_, assign, not_, raise_, setup, state_in


def _noop(context: Any, event: Any) -> None:
    return None


def _yes(context: Any, event: Any) -> bool:
    return True


def _impls() -> Any:
    return setup(
        actions={"notify": _noop, "inc": assign({"n": lambda c, e: c["n"] + 1})},
        guards={"ready": _yes, "allowed": _yes},
        actors={"fetchUser": _noop},
        delays={"soon": lambda c, e: 500},
    )


def parallel_in_compound() -> Machine:
    return _impls().create_machine(
        {
            "id": "player",
            "initial": "idle",
            "context": {"n": 0},
            "states": {
                "idle": {"on": {"PLAY": "active"}},
                "active": {
                    "initial": "media",
                    "on": {"STOP": "idle"},
                    "states": {
                        "media": {
                            "type": "parallel",
                            "states": {
                                "video": {
                                    "initial": "playing",
                                    "states": {
                                        "playing": {"on": {"PAUSE": "paused"}},
                                        "paused": {"on": {"PAUSE": "playing"}},
                                    },
                                },
                                "audio": {
                                    "initial": "loud",
                                    "states": {
                                        "loud": {"on": {"MUTE": "muted"}},
                                        "muted": {"on": {"MUTE": "loud"}},
                                    },
                                },
                            },
                            "onDone": "done",
                        },
                        "done": {"type": "final"},
                    },
                    "onDone": "idle",
                },
            },
        }
    )


def history() -> Machine:
    return _impls().create_machine(
        {
            "id": "editor",
            "initial": "editing",
            "states": {
                "editing": {
                    "initial": "text",
                    "states": {
                        "text": {
                            "initial": "plain",
                            "states": {"plain": {"on": {"BOLD": "bold"}}, "bold": {}},
                            "on": {"IMAGE": "image"},
                        },
                        "image": {},
                        "deep": {"type": "history", "history": "deep"},
                        "shallow": {"type": "history", "target": "image"},
                    },
                    "on": {"HELP": "help"},
                },
                "help": {"on": {"BACK": "editing.deep", "RESTART": "editing.shallow"}},
            },
        }
    )


def every_transition() -> Machine:
    return _impls().create_machine(
        {
            "id": "kinds",
            "initial": "a",
            "context": {"n": 0},
            "states": {
                "a": {
                    "entry": ["notify", {"type": "inc"}],
                    "exit": [raise_({"type": "LEFT"})],
                    "on": {
                        "SELF": {"target": "a", "reenter": True, "actions": "inc"},
                        "STAY": {"actions": ["notify"]},
                        "GO": [
                            {"target": "b", "guard": and_(["ready", not_("allowed")])},
                            {"target": "c", "guard": state_in("#kinds.a")},
                            "d",
                        ],
                        "foo.*": "b",
                    },
                    "after": {"1000": "b", "soon": {"target": "c", "guard": "ready"}},
                },
                "b": {
                    "invoke": {
                        "id": "user",
                        "src": "fetchUser",
                        "onDone": {"target": "c", "actions": "notify"},
                        "onError": "d",
                    },
                },
                "c": {"always": [{"target": "d", "guard": "ready"}, "a"]},
                "d": {"type": "final"},
            },
        }
    )


def hostile_names() -> Machine:
    """Keys and events that would be syntax or HTML if written as they are."""
    return setup().create_machine(
        {
            "id": "x --> y",
            "initial": "<script>alert(1)</script>",
            "states": {
                "<script>alert(1)</script>": {
                    "on": {'a : b ; c " d\n{e} #f; %%g': "state", "end": "note"}
                },
                "state": {"on": {"class": "<script>alert(1)</script>"}},
                "note": {"type": "final"},
            },
        }
    )


CHARTS = {
    "parallel-in-compound": parallel_in_compound,
    "history": history,
    "every-transition": every_transition,
    "hostile-names": hostile_names,
}
