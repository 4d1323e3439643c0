"""``backstate.chart._outline``: what a diagram is drawn from."""

from __future__ import annotations

from typing import Any

import pytest

from backstate.chart import DefinitionError
from backstate.chart._outline import MAX_LABEL, check_outline, outline
from tests.viz.charts import CHARTS, every_transition, history


def _find(node: dict[str, Any], key: str) -> dict[str, Any]:
    found = [n for n in _walk(node) if n["key"] == key]
    assert len(found) == 1, key
    return found[0]


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node["states"] for n in _walk(child))]


def test_transitions_carry_kind_event_guard_actions_and_targets() -> None:
    a = _find(outline(every_transition()), "a")
    assert a["entry"] == ["notify", "inc"] and a["exit"] == ["raise(LEFT)"]
    assert [
        (t["kind"], t.get("event"), t.get("delay"), t["targets"]) for t in a["transitions"]
    ] == [
        ("event", "SELF", None, ["kinds.a"]),
        ("event", "STAY", None, []),
        ("event", "GO", None, ["kinds.b"]),
        ("event", "GO", None, ["kinds.c"]),
        ("event", "GO", None, ["kinds.d"]),
        ("event", "foo.*", None, ["kinds.b"]),
        ("after", None, 1000, ["kinds.b"]),
        ("after", None, "soon", ["kinds.c"]),
    ]
    assert a["transitions"][0]["reenter"] is True
    assert [t["guard"] for t in a["transitions"][2:4]] == ["(ready && !allowed)", "in(#kinds.a)"]


def test_invocations_and_eventless_transitions() -> None:
    data = outline(every_transition())
    b, c = _find(data, "b"), _find(data, "c")
    assert b["invoke"] == [{"id": "user", "src": "fetchUser"}]
    assert [(t["kind"], t["invoke"], t["actions"]) for t in b["transitions"]] == [
        ("invoke.done", "fetchUser", ["notify"]),
        ("invoke.error", "fetchUser", []),
    ]
    assert [(t["kind"], t["guard"]) for t in c["transitions"]] == [
        ("always", "ready"),
        ("always", None),
    ]


def test_history_states_have_kind_and_default() -> None:
    data = outline(history())
    assert (_find(data, "deep")["history"], _find(data, "deep")["default"]) == ("deep", [])
    shallow = _find(data, "shallow")
    assert (shallow["history"], shallow["default"]) == ("shallow", ["editor.editing.image"])


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_an_outline_passes_its_own_check(name: str) -> None:
    data = outline(CHARTS[name]())
    assert check_outline(data) is data


@pytest.mark.parametrize(
    "bad",
    [
        None,
        {"id": "x"},
        {
            "id": "x",
            "key": "",
            "type": "atomic",
            "tags": [],
            "entry": [1],
            "exit": [],
            "invoke": [],
            "transitions": [],
            "states": [],
        },
        {
            "id": "x",
            "key": "",
            "type": "atomic",
            "tags": [],
            "entry": [],
            "exit": [],
            "invoke": [],
            "transitions": [{"kind": "eval", "actions": [], "targets": []}],
            "states": [],
        },
    ],
)
def test_check_refuses_what_is_not_an_outline(bad: Any) -> None:
    with pytest.raises(DefinitionError) as caught:
        check_outline(bad)
    assert caught.value.code == "invalid-config"


def test_long_labels_are_cut() -> None:
    from backstate.chart import setup

    machine = setup().create_machine(
        {"id": "m", "initial": "a", "states": {"a": {"on": {"E" * 500: "a"}}}}
    )
    assert len(outline(machine)["states"][0]["transitions"][0]["event"]) == MAX_LABEL


def test_a_skeleton_is_drawn_as_its_states_alone() -> None:
    """Versions stored before outlines were recorded are drawn from their skeleton."""
    from backstate.chart._describe import shape, skeleton

    data = outline(shape(skeleton(history())))
    assert check_outline(data) is data
    assert [s["key"] for s in data["states"]] == ["editing", "help"]
    assert all(not n["transitions"] for n in _walk(data))
    assert _find(data, "deep")["history"] == "deep"
