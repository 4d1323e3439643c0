"""``backstate.viz.to_mermaid``: golden diagrams of every example machine and of the
charts in ``charts.py``, each parsed by mermaid's own parser; highlighting, counts and
escaping. ``BACKSTATE_UPDATE_GOLDEN=1`` rewrites the golden files (review the diff)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backstate.machine import load_file
from backstate.viz import outline, state_names, to_mermaid

from .charts import CHARTS, hostile_names, parallel_in_compound
from .mermaid import parse_all

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden")
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if p.name != "__init__.py")


def _diagrams() -> dict[str, str]:
    found = {p.stem: to_mermaid(outline(load_file(p).machine)) for p in EXAMPLES}
    found.update({name: to_mermaid(outline(make())) for name, make in CHARTS.items()})
    return found


DIAGRAMS = _diagrams()


@pytest.mark.parametrize("name", sorted(DIAGRAMS))
def test_golden(name: str) -> None:
    golden = GOLDEN / f"{name}.mmd"
    if os.environ.get("BACKSTATE_UPDATE_GOLDEN"):
        golden.write_text(DIAGRAMS[name])
    assert DIAGRAMS[name] == golden.read_text()


def test_every_golden_has_a_machine() -> None:
    assert {p.stem for p in GOLDEN.glob("*.mmd")} == set(DIAGRAMS)


def test_mermaid_parses_every_diagram() -> None:
    machine = parallel_in_compound()
    active = [
        "player.active",
        "player.active.media",
        "player.active.media.video.paused",
        "player.active.media.audio.loud",
    ]
    counts = {"player.idle": 3, "player.active.media.video.paused": 12}
    texts = {**DIAGRAMS, "highlighted": to_mermaid(outline(machine), active, counts)}
    errors = dict(zip(texts, parse_all(list(texts.values())), strict=True))
    assert errors == dict.fromkeys(texts)


def test_highlight_names_the_active_states() -> None:
    data = outline(parallel_in_compound())
    names = state_names(data)
    text = to_mermaid(data, ["player.idle", "no.such.state"])
    assert text.splitlines()[1].startswith("  classDef active ")
    assert text.splitlines()[-1] == f"  class {names['player.idle']} active"


def test_counts_follow_the_state_name() -> None:
    text = to_mermaid(outline(parallel_in_compound()), counts={"player.idle": 7})
    assert 'state "idle (7)" as s1' in text


def test_untrusted_names_are_entities_not_syntax() -> None:
    text = to_mermaid(outline(hostile_names()))
    assert "<" not in text and ">" not in text.replace("-->", "")
    assert "#60;script#62;alert(1)#60;/script#62;" in text
    # One statement per line: the newline in the event name is an entity.
    assert all(line.startswith("  ") or line == "stateDiagram-v2" for line in text.splitlines())
    assert "%%" not in text
