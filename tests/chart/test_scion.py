"""The SCION statechart suite (jbeard4/scxml-test-framework, Apache-2.0), data-driven.

``scripts/fetch-suites`` downloads it into ``.cache/scion``. Every ``test/<group>/<name>``
pair (an SCXML document and a JSON script) becomes one case: load it with
``backstate.chart.scxml``, run it in ``backstate.testing.Actor`` and compare the set of
active atomic state ids with the script after start and after each event (``test_scion``).

The ``w3c-ecma`` group (W3C IRP tests in ECMAScript) runs separately (``test_w3c_ecma``),
judged as XState's harness does: after the script's events and the clock running out, the
machine must rest in its top-level final ``pass`` state (``final`` for the manual tests
without one). Their scripts' intermediate configurations assume that sends to the external
queue and invoked children are handled asynchronously, which an in-memory Actor does not.

Cases whose documents need an ECMAScript datamodel beyond the importer's expression
subset, or (W3C only) other constructs the importer rejects, are strict xfails decided at
collection time by loading the document, with every construct it rejects as the reason;
cases where we deliberately differ from SCXML (following XState v5, which also has no
error events) are in KNOWN_FAILURES.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backstate.chart import DefinitionError
from backstate.chart.scxml import NEEDS_DATAMODEL, load_scxml, machine_from_scxml, sanitize_id
from backstate.testing import Actor

SUITE = Path(__file__).resolve().parents[2] / ".cache" / "scion" / "test"
W3C = "w3c-ecma"

# "<group>/<name>" -> why we fail it on purpose. Each entry must fail (strict xfail).
_INVALID = (
    "is invalid ECMAScript on purpose: SCXML raises error.execution for it, XState and "
    "backstate have no error events, and the importer rejects the expression"
)
KNOWN_FAILURES: dict[str, str] = {
    "assign/assign_invalid": (
        f"the unterminated object literal \"{{p1: 'v1'\" {_INVALID}; also, initial='s1' "
        "names a state inside uber, and XState v5 only allows a direct child as initial"
    ),
    "data/data_invalid": (
        f"the unterminated object literal \"{{p1: 'v1'\" {_INVALID}; also, initial='s1' "
        "names a state inside uber, and XState v5 only allows a direct child as initial"
    ),
    "misc/deep-initial": (
        "deep initial state (<scxml initial='s2'> with s2 inside uber): XState v5 only "
        "allows a direct child as 'initial' and throws when it enters such a state (its "
        "scxml.test.ts skips this case, and W3C 364/388/413/576 for the same reason); "
        "backstate rejects the machine when it is loaded (invalid-initial)"
    ),
    "scxml-prefix-event-name-matching/star0": (
        "document order across descriptors: SCXML picks the first matching transition in "
        "document order ('*' before 'foo'); XState v5 groups transitions by descriptor and "
        "tries 'foo.*' (more specific) before '*', so 'fail' is entered"
    ),
    "w3c-ecma/test277.txml": f"<data expr='return'>: 'return' {_INVALID}",
    "w3c-ecma/test309.txml": (
        f"cond='return': 'return' {_INVALID} (SCXML also takes the condition as false)"
    ),
    "w3c-ecma/test312.txml": f"<assign expr='return'>: 'return' {_INVALID}",
    "w3c-ecma/test313.txml": (
        "<assign expr='return'>: the test allows a processor to reject the document for "
        "the invalid expression, as the importer does, but judges it by its pass state"
    ),
    "w3c-ecma/test314.txml": (
        "<assign expr='return'>: the test allows a processor to reject the document for "
        "the invalid expression, as the importer does, but judges it by its pass state"
    ),
    "w3c-ecma/test344.txml": (
        f"cond='return': 'return' {_INVALID} (SCXML also takes the condition as false)"
    ),
    "w3c-ecma/test409.txml": (
        "In() inside <onexit>: SCXML removes each state from the configuration as it is "
        "exited; XState v5's stateIn reads the snapshot from before the microstep, so "
        "In('s011') is still true in s01's exit actions and event1 is raised (XState 5.33 "
        "enters 'fail' too)"
    ),
    "w3c-ecma/test411.txml": (
        "In() inside <onentry>: SCXML adds a state to the configuration before running its "
        "onentry; XState v5's stateIn reads the snapshot from before the microstep, so "
        "In('s01') is false while entering s0 and s01 (XState skips 411 too)"
    ),
    "w3c-ecma/test487.txml": f"<assign expr='return'>: 'return' {_INVALID}",
}


def _case_ids(w3c: bool) -> list[str]:
    if not SUITE.is_dir():
        return []
    return sorted(
        f"{path.parent.name}/{path.stem}"
        for path in SUITE.glob("*/*.scxml")
        if (path.parent.name == W3C) == w3c and path.with_suffix(".json").is_file()
    )


def _unsupported_reason(case: str, w3c: bool) -> str | None:
    """Every construct the importer rejects in a case (which must include one that needs
    an ECMAScript datamodel, unless it is a W3C case), or None if it loads."""
    try:
        load_scxml((SUITE / f"{case}.scxml").read_text(encoding="utf-8"))
    except DefinitionError as exc:
        if exc.code == "unsupported-scxml" and (w3c or NEEDS_DATAMODEL in exc.message):
            return f"rejected by the SCXML importer: {exc.message}"
    return None


def _params(w3c: bool) -> list[Any]:
    params = []
    for case in _case_ids(w3c):
        marks = []
        if case in KNOWN_FAILURES:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[case]))
        elif (reason := _unsupported_reason(case, w3c)) is not None:
            marks.append(pytest.mark.xfail(strict=True, reason=reason))
        params.append(pytest.param(case, marks=marks, id=case))
    return params


pytestmark = pytest.mark.skipif(
    not SUITE.is_dir(), reason="SCION suite not fetched: run scripts/fetch-suites"
)


def _expected(ids: list[str]) -> set[str]:
    return {sanitize_id(i) for i in ids}


@pytest.mark.parametrize("case", _params(w3c=False))
def test_scion(case: str) -> None:
    script = json.loads((SUITE / f"{case}.json").read_text(encoding="utf-8"))
    machine = machine_from_scxml((SUITE / f"{case}.scxml").read_text(encoding="utf-8"))
    actor = Actor(machine)
    assert set(actor.snapshot.atomic_ids) == _expected(script["initialConfiguration"])
    for step, entry in enumerate(script["events"]):
        if entry.get("after"):
            actor.advance(entry["after"])
        event = entry["event"]
        data = event.get("data")
        actor.send({"type": event["name"], **(data if isinstance(data, dict) else {})})
        assert set(actor.snapshot.atomic_ids) == _expected(entry["nextConfiguration"]), (
            f"after event #{step} {event['name']!r}"
        )


@pytest.mark.parametrize("case", _params(w3c=True))
def test_w3c_ecma(case: str) -> None:
    text = (SUITE / f"{case}.scxml").read_text(encoding="utf-8")
    script = json.loads((SUITE / f"{case}.json").read_text(encoding="utf-8"))
    actor = Actor(machine_from_scxml(text))
    for entry in script["events"]:
        if actor.snapshot.status != "active":
            break
        actor.advance(entry.get("after", 0))
        actor.send({"type": entry["event"]["name"]})
    actor.advance(60_000)  # let every timeout fire
    manual = load_scxml(text)["states"].get("pass") is None
    assert actor.snapshot.atomic_ids == ["final" if manual else "pass"]
    assert actor.snapshot.status == "done"


def test_known_failures_are_cases() -> None:
    assert set(KNOWN_FAILURES) <= set(_case_ids(w3c=False)) | set(_case_ids(w3c=True))
