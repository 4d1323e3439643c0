"""A hypothesis strategy for random statecharts in JSON form, with named guards and
actions whose meaning is fixed (so the same chart can run on another engine)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from backstate.chart import Machine, assign, raise_, setup

EVENTS = ["A", "B", "C"]
GUARDS = {
    "even": lambda c, e: c["n"] % 2 == 0,
    "odd": lambda c, e: c["n"] % 2 == 1,
    "lt3": lambda c, e: c["n"] < 3,
}


def _record(context: Any, event: Any) -> None:
    pass


ACTIONS = {
    "inc": assign({"n": lambda c, e: c["n"] + 1}),
    "rec": _record,
    "raiseB": raise_({"type": "B"}),
}


def build(config: dict[str, Any]) -> Machine:
    return setup(actions=ACTIONS, guards=GUARDS).create_machine(config)


@st.composite
def charts(draw: st.DrawFn, max_depth: int = 3) -> dict[str, Any]:
    ids: list[str] = []
    nodes: list[dict[str, Any]] = []
    history_ids: list[str] = []

    def make(depth: int) -> dict[str, Any]:
        node_id = f"s{len(ids)}"
        ids.append(node_id)
        kinds = ["atomic", "compound", "parallel"] if depth < max_depth else ["atomic"]
        kind = draw(st.sampled_from(kinds))
        node: dict[str, Any] = {"id": node_id}
        nodes.append(node)
        if kind == "atomic":
            return node
        count = draw(st.integers(1 if kind == "compound" else 2, 3))
        states = {f"k{i}": make(depth + 1) for i in range(count)}
        last = states[f"k{count - 1}"]
        if kind == "compound" and count > 1 and "states" not in last and draw(st.booleans()):
            last["type"] = "final"
        if draw(st.integers(0, 3)) == 0:
            hid = f"h{len(history_ids)}"
            history_ids.append(hid)
            states[f"hist{hid}"] = {
                "type": "history",
                "id": hid,
                "history": draw(st.sampled_from(["shallow", "deep"])),
            }
        node["states"] = states
        if kind == "parallel":
            node["type"] = "parallel"
        else:
            node["initial"] = "k0"
        return node

    root = make(0)
    if "states" not in root:
        root["id"] = "s1"
        ids.append("s1")
        root = {"id": "s0", "initial": "k0", "states": {"k0": root}}
        nodes.append(root)
    targets = ids[1:] + history_ids
    for node in nodes:
        if node.get("type") == "final":
            continue
        on: dict[str, Any] = {}
        for event in draw(st.lists(st.sampled_from(EVENTS), max_size=2, unique=True)):
            on[event] = [_transition(draw, targets) for _ in range(draw(st.integers(1, 2)))]
        if on:
            node["on"] = on
        if draw(st.integers(0, 5)) == 0:
            node["always"] = {
                "target": f"#{draw(st.sampled_from(targets))}",
                "guard": "lt3",
                "actions": ["inc"],
            }
        if "initial" in node and draw(st.integers(0, 3)) == 0:
            node["onDone"] = {"target": f"#{draw(st.sampled_from(targets))}", "actions": ["rec"]}
    root["context"] = {"n": 0}
    return root


def _transition(draw: st.DrawFn, targets: list[str]) -> Any:
    t: dict[str, Any] = {}
    if draw(st.integers(0, 4)) > 0:
        t["target"] = f"#{draw(st.sampled_from(targets))}"
        if draw(st.booleans()):
            t["reenter"] = True
    guard = draw(st.sampled_from([None, None, "even", "odd"]))
    if guard:
        t["guard"] = guard
    actions = draw(st.lists(st.sampled_from(["inc", "rec", "raiseB"]), max_size=2))
    if actions:
        t["actions"] = actions
    # A bare target as its shorthand string, so both engines read lists of them.
    return t["target"] if list(t) == ["target"] else t


events = st.lists(st.sampled_from(EVENTS), min_size=1, max_size=12)
