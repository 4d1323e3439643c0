"""A machine outline (``backstate.chart`` outline) as a mermaid ``stateDiagram-v2``.

Compound states are composite states, a parallel state's regions are concurrent
sections (``--``), an initial child is ``[*] --> child`` and a final state ``x --> [*]``
inside its parent. A history state is a state labelled ``H`` (shallow) or ``H*`` (deep)
with an edge to its default target. Transitions are labelled ``event [guard] / actions``;
``after 500ms``, ``always``, ``done`` and ``done(svc)``/``error(svc)`` name the other
kinds. Invoked services and entry/exit actions are descriptions on atomic states and
notes beside composite ones (mermaid refuses descriptions on composites).

Every state is declared first, tree-shaped, and edges come after the whole tree:
mermaid places a state where it first sees it, so an edge across a composite's border
written before the target's declaration would draw the target twice.

Names are generated (``s`` and the state's document-order number); every label goes
through ``_text``, which writes any character that could end or change a statement as
a mermaid entity (``#60;``), so a state key or event name cannot inject syntax or HTML.
Mermaid hands entities on as HTML character references (``&#60;``), which an HTML
label decodes (GitHub's) but an SVG text shows as they are: the dashboard and
``_render`` decode them in the drawn SVG's text nodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

ACTIVE_CLASS = "active"
ACTIVE_GROUP_CLASS = "activeGroup"  # an active composite: its border, not its fill
# Characters kept as they are in labels; everything else becomes an entity code.
_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _.,*/()[]!&|=+-?'")
_STYLE = {
    ACTIVE_CLASS: "fill:#ffe08a,stroke:#b7791f,stroke-width:3px,color:#000",
    ACTIVE_GROUP_CLASS: "stroke:#b7791f,stroke-width:3px",
    "history": "fill:#eef,stroke:#557,stroke-dasharray:3 3",
}


def state_names(outline: Mapping[str, Any]) -> dict[str, str]:
    """``{state id: mermaid name}`` for every state of the outline."""
    names: dict[str, str] = {}

    def walk(node: Mapping[str, Any]) -> None:
        names[node["id"]] = f"s{len(names)}"
        for child in node["states"]:
            walk(child)

    walk(outline)
    return names


def to_mermaid(
    outline: Mapping[str, Any],
    active: Iterable[str] = (),
    counts: Mapping[str, int] | None = None,
) -> str:
    """The diagram. ``active``: state ids to highlight (a configuration); ``counts``:
    a number per state id, shown after its name (instances in that state)."""
    names = state_names(outline)
    counts = counts or {}
    lines = ["stateDiagram-v2"]
    active = set(active)
    nodes = [n for n in _walk(outline) if n["id"] in active]
    highlighted = [names[n["id"]] for n in nodes if not n["states"]]
    groups = [names[n["id"]] for n in nodes if n["states"]]
    for cls, members in ((ACTIVE_CLASS, highlighted), (ACTIVE_GROUP_CLASS, groups)):
        if members:
            lines.append(f"  classDef {cls} {_STYLE[cls]}")
    if _has_history(outline):
        lines.append(f"  classDef history {_STYLE['history']}")
    _declare(outline, names, counts, lines, 1)
    edges: list[str] = []
    _edges(outline, names, edges)
    lines.extend(edges)
    histories = [names[n["id"]] for n in _walk(outline) if n["type"] == "history"]
    if histories:
        lines.append(f"  class {', '.join(histories)} history")
    for cls, members in ((ACTIVE_CLASS, highlighted), (ACTIVE_GROUP_CLASS, groups)):
        if members:
            lines.append(f"  class {', '.join(members)} {cls}")
    return "\n".join(lines) + "\n"


def _walk(node: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    yield node
    for child in node["states"]:
        yield from _walk(child)


def _has_history(outline: Mapping[str, Any]) -> bool:
    return any(n["type"] == "history" for n in _walk(outline))


def _label(node: Mapping[str, Any], counts: Mapping[str, int]) -> str:
    if node["type"] == "history":
        label = "H*" if node.get("history") == "deep" else "H"
    else:
        label = node["key"] or node["id"]
    if node["id"] in counts:
        label += f" ({counts[node['id']]})"
    return _text(label)


def _notes(node: Mapping[str, Any]) -> list[str]:
    notes = [f"invoke {inv['src']}" for inv in node["invoke"]]
    if node["entry"]:
        notes.append("entry / " + ", ".join(node["entry"]))
    if node["exit"]:
        notes.append("exit / " + ", ".join(node["exit"]))
    return notes


def _declare(
    node: Mapping[str, Any],
    names: Mapping[str, str],
    counts: Mapping[str, int],
    lines: list[str],
    depth: int,
) -> None:
    pad = "  " * depth
    name = names[node["id"]]
    children = node["states"]
    if not children:
        lines.append(f'{pad}state "{_label(node, counts)}" as {name}')
        lines.extend(f"{pad}{name} : {_text(note)}" for note in _notes(node))
        return
    lines.append(f'{pad}state "{_label(node, counts)}" as {name} {{')
    inner = "  " * (depth + 1)
    if node["type"] == "parallel":
        for index, region in enumerate(children):
            if index:
                lines.append(f"{inner}--")
            _declare(region, names, counts, lines, depth + 1)
    else:
        if "initial" in node:
            lines.append(f"{inner}[*] --> {names[node['initial']]}")
        for child in children:
            _declare(child, names, counts, lines, depth + 1)
        for child in children:
            if child["type"] == "final":
                lines.append(f"{inner}{names[child['id']]} --> [*]")
    lines.append(f"{pad}}}")
    if notes := _notes(node):
        lines.append(f"{pad}note right of {name}")
        lines.extend(f"{inner}{_text(note)}" for note in notes)
        lines.append(f"{pad}end note")


def _edges(node: Mapping[str, Any], names: Mapping[str, str], edges: list[str]) -> None:
    source = names[node["id"]]
    if node["type"] == "history":
        for target in node.get("default", []):
            edges.append(f"  {source} --> {names[target]}")
    for t in node["transitions"]:
        label = _text(_transition_label(t))
        for target in t["targets"] or [node["id"]]:
            edges.append(f"  {source} --> {names[target]} : {label}")
    for child in node["states"]:
        _edges(child, names, edges)


def _transition_label(t: Mapping[str, Any]) -> str:
    kind = t["kind"]
    label: str
    if kind == "event":
        label = t["event"]
    elif kind == "after":
        delay = t["delay"]
        label = f"after {_duration(delay)}" if isinstance(delay, int) else f"after {delay}"
    elif kind == "invoke.done":
        label = f"done({t['invoke']})"
    elif kind == "invoke.error":
        label = f"error({t['invoke']})"
    else:
        label = kind
    if t.get("guard"):
        label += f" [{t['guard']}]"
    if t["actions"]:
        label += " / " + ", ".join(t["actions"])
    if not t["targets"]:
        label += " (internal)"
    elif t.get("reenter"):
        label += " (reenter)"
    return label


def _duration(ms: int) -> str:
    for unit, size in (("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _text(text: str) -> str:
    return "".join(ch if ch in _SAFE or _letter(ch) else f"#{ord(ch)};" for ch in text)


def _letter(ch: str) -> bool:
    """Letters and digits beyond ASCII (``é``, ``…`` is not one) mean nothing to mermaid."""
    return ord(ch) > 127 and ch.isalnum()
