"""Data-driven conformance cases ported from XState v5's own test suite.

One JSON file per case under cases/<group>/; the format is described in
cases/README.md. Known failures are listed with reasons in cases/known_failures.json.
Every snapshot that any machine of a case reaches (the case's own and its child
machines') must have a legal configuration.
"""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from backstate.chart import DefinitionError, Machine, setup
from backstate.testing import Actor

from .legality import illegal

CASES = Path(__file__).parent / "cases"
KNOWN_FAILURES: dict[str, str] = json.loads((CASES / "known_failures.json").read_text())


def _case_ids() -> list[Any]:
    params = []
    for path in sorted(CASES.glob("*/*.json")):
        case_id = f"{path.parent.name}/{path.stem}"
        marks = []
        if case_id in KNOWN_FAILURES:
            marks.append(pytest.mark.xfail(reason=KNOWN_FAILURES[case_id], strict=True))
        params.append(pytest.param(path, id=case_id, marks=marks))
    return params


def _track_entries(config: dict[str, Any], path: tuple[str, ...] = ()) -> None:
    title = ".".join(path) if path else "__root__"
    for key, tag in (("entry", "enter"), ("exit", "exit")):
        existing = config.get(key)
        existing = (
            existing if isinstance(existing, list) else ([] if existing is None else [existing])
        )
        config[key] = [{"type": "record", "params": {"value": f"{tag}: {title}"}}, *existing]
    for child_key, child in (config.get("states") or {}).items():
        _track_entries(child, (*path, child_key))


def build(case: dict[str, Any], log: list[Any]) -> Machine:
    impls: dict[str, dict[str, Any]] = {"actions": {}, "guards": {}, "actors": {}, "delays": {}}
    if case.get("implementations"):
        module = importlib.import_module(f"tests.chart.impls.{case['implementations']}")
        for kind in impls:
            impls[kind].update(getattr(module, kind.upper(), {}))
        if hasattr(module, "bind_log"):
            module.bind_log(log)
    impls["actions"]["record"] = lambda context, event, params: log.append(params["value"])
    config = copy.deepcopy(case["machine"])
    if case.get("track_entries"):
        _track_entries(config)
    return setup(**impls).create_machine(config)


def check(actor: Actor, expect: dict[str, Any], log: list[Any], step: int) -> None:
    snap = actor.snapshot
    where = f"step {step}"
    if "value" in expect:
        assert snap.value == expect["value"], where
    if "context" in expect:
        assert snap.context == expect["context"], where
    if "status" in expect:
        assert snap.status == expect["status"], where
    if "output" in expect:
        assert snap.output == expect["output"], where
    if "tags" in expect:
        assert sorted(snap.tags) == sorted(expect["tags"]), where
    if "log" in expect:
        assert log == expect["log"], where
        log.clear()
    for value in expect.get("matches", []):
        assert snap.matches(value), f"{where}: should match {value!r}"
    for value in expect.get("not_matches", []):
        assert not snap.matches(value), f"{where}: should not match {value!r}"
    for event, allowed in expect.get("can", {}).items():
        assert snap.can(event) is allowed, f"{where}: can({event!r})"
    if "atomic_ids" in expect:
        assert sorted(snap.atomic_ids) == sorted(expect["atomic_ids"]), where
    if "state_strings" in expect:
        assert snap.state_strings == expect["state_strings"], where
    if "emitted" in expect:
        assert actor.emitted == expect["emitted"], where


@pytest.fixture
def legal_configurations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks the configuration of every snapshot a machine returns while the test runs."""
    for name in ("initial_transition", "transition"):
        original = getattr(Machine, name)

        def checked(self: Machine, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            snapshot, effects = _original(self, *args, **kwargs)
            reason = illegal(snapshot)
            assert reason is None, f"{self.id}: {reason} in {snapshot.active_ids}"
            return snapshot, effects

        monkeypatch.setattr(Machine, name, checked)


@pytest.mark.usefixtures("legal_configurations")
@pytest.mark.parametrize("path", _case_ids())
def test_case(path: Path) -> None:
    case = json.loads(path.read_text())
    log: list[Any] = []
    if "definition_error" in case:
        with pytest.raises(DefinitionError) as info:
            build(case, log)
        assert info.value.code == case["definition_error"]
        return
    machine = build(case, log)
    actor = Actor(machine, input=case.get("input"))
    for index, step in enumerate(case["steps"]):
        if "send" in step:
            actor.send(step["send"])
        elif "advance" in step:
            actor.advance(step["advance"])
        elif "rehydrate" in step:
            data = json.loads(json.dumps(actor.persist()))
            actor = Actor.restore(machine, data)
        elif "expect" in step:
            check(actor, step["expect"], log, index)
        else:
            raise AssertionError(f"unknown step {step!r}")
