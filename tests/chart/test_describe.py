"""A machine's skeleton makes a machine that resolves every snapshot of the original the
same way (what a server running machine code in sandboxed workers relies on), over
random charts and every example machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from backstate.chart import DefinitionError, ExecutionError, Machine, Snapshot
from backstate.chart._describe import shape, skeleton
from backstate.machine import load_file

from .random_charts import build, charts, events

EXAMPLES = sorted(
    p for p in (Path(__file__).parents[2] / "examples").glob("*.py") if not p.name.startswith("_")
)


def _same(original: Snapshot, machine: Machine) -> None:
    data = json.loads(json.dumps(original.to_json()))
    resolved = machine.resolve_snapshot(data)
    assert resolved.value == original.value
    assert resolved.tags == original.tags
    assert resolved.state_strings == original.state_strings
    assert resolved.active_ids == original.active_ids
    assert resolved.to_json() == original.to_json()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(charts(), events)
def test_the_shape_of_a_random_chart_resolves_its_snapshots(
    config: dict[str, Any], sequence: list[str]
) -> None:
    try:
        machine = build(config)
        snapshot, _ = machine.initial_transition()
    except (DefinitionError, ExecutionError):
        return
    described = skeleton(machine)
    assert json.loads(json.dumps(described)) == described  # plain JSON
    twin = shape(described)
    _same(snapshot, twin)
    for event in sequence:
        try:
            snapshot, _ = machine.transition(snapshot, event)
        except ExecutionError:
            return
        _same(snapshot, twin)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_the_shape_of_each_example_resolves_its_initial_snapshot(path: Path) -> None:
    machine = load_file(path).machine
    snapshot, _ = machine.initial_transition({}, context={})
    _same(snapshot, shape(skeleton(machine)))


@pytest.mark.parametrize(
    "bad",
    [[], {"states": []}, {"tags": [1]}, {"type": 3}, {"on": {"E": "x"}}, {"entry": "x"}],
)
def test_a_skeleton_holds_no_behaviour(bad: Any) -> None:
    with pytest.raises(DefinitionError):
        shape(bad)
