"""Properties over random charts: JSON round trips, rehydration, legal configurations."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings

from backstate.chart import DefinitionError, ExecutionError, Machine, Snapshot

from .legality import illegal
from .random_charts import build, charts, events

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _machine(config: dict[str, Any]) -> Machine | None:
    try:
        return build(config)
    except DefinitionError as exc:
        # Random targets may ask for states that cannot be active together.
        assert exc.code in ("invalid-config",), exc
        return None


def _step(machine: Machine, snapshot: Snapshot | dict[str, Any], event: str) -> Any:
    try:
        snap, effects = machine.transition(snapshot, event)
    except ExecutionError as exc:
        return ("error", exc.code)
    return (snap.to_json(), [repr(e) for e in effects], snap)


def _assert_legal(snapshot: Snapshot) -> None:
    reason = illegal(snapshot)
    assert reason is None, reason


@SETTINGS
@given(charts(), events)
def test_rehydrated_run_equals_uninterrupted_run(
    config: dict[str, Any], sequence: list[str]
) -> None:
    machine = _machine(config)
    if machine is None:
        return
    try:
        snapshot, _ = machine.initial_transition()
    except ExecutionError:
        return
    for event in sequence:
        persisted = json.loads(json.dumps(snapshot.to_json()))
        assert machine.resolve_snapshot(persisted).to_json() == snapshot.to_json()
        direct = _step(machine, snapshot, event)
        rehydrated = _step(build(config), persisted, event)
        assert direct[:2] == rehydrated[:2]
        if direct[0] == "error":
            return
        snapshot = direct[2]
        _assert_legal(snapshot)


@SETTINGS
@given(charts())
def test_initial_configuration_is_legal(config: dict[str, Any]) -> None:
    machine = _machine(config)
    if machine is None:
        return
    try:
        snapshot, _ = machine.initial_transition()
    except ExecutionError:
        return
    _assert_legal(snapshot)
    assert json.loads(json.dumps(snapshot.to_json())) == snapshot.to_json()
