"""The SCION statechart suite (jbeard4/scxml-test-framework, Apache-2.0), data-driven.

``scripts/fetch-suites`` downloads it into ``.cache/scion``. Every ``test/<group>/<name>``
pair (an SCXML document and a JSON script) except the ``w3c-ecma`` group (W3C IRP tests
rewritten in ECMAScript, which need a real JS datamodel) becomes one case: load it with
``backstate.chart.scxml``, run it in ``backstate.testing.Actor`` and compare the set of
active atomic state ids with the script after start and after each event.

Cases whose documents need an ECMAScript datamodel beyond the importer's expression
subset are strict xfails (decided at collection time by loading the document); cases
where we deliberately differ from SCXML (following XState v5) are in KNOWN_FAILURES.
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
EXCLUDED_GROUPS = {"w3c-ecma"}

# "<group>/<name>" -> why we fail it on purpose. Each entry must fail (strict xfail).
KNOWN_FAILURES: dict[str, str] = {
    "misc/deep-initial": (
        "deep initial state (<scxml initial='s2'> with s2 inside uber): XState v5 only "
        "allows a direct child as 'initial' (its scxml.test.ts skips this case and W3C "
        "364/388/576 for the same reason)"
    ),
    "scxml-prefix-event-name-matching/star0": (
        "document order across descriptors: SCXML picks the first matching transition in "
        "document order ('*' before 'foo'); XState v5 groups transitions by descriptor and "
        "tries 'foo.*' (more specific) before '*', so 'fail' is entered"
    ),
}


def _case_ids() -> list[str]:
    if not SUITE.is_dir():
        return []
    return sorted(
        f"{path.parent.name}/{path.stem}"
        for path in SUITE.glob("*/*.scxml")
        if path.parent.name not in EXCLUDED_GROUPS and path.with_suffix(".json").is_file()
    )


def _datamodel_reason(case: str) -> str | None:
    """The reason a case needs an ECMAScript datamodel, or None if the importer takes it."""
    try:
        load_scxml((SUITE / f"{case}.scxml").read_text(encoding="utf-8"))
    except DefinitionError as exc:
        if exc.code == "unsupported-scxml" and NEEDS_DATAMODEL in exc.message:
            return f"needs ECMAScript datamodel: {exc.message}"
    return None


def _params() -> list[Any]:
    params = []
    for case in _case_ids():
        marks = []
        if case in KNOWN_FAILURES:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[case]))
        elif (reason := _datamodel_reason(case)) is not None:
            marks.append(pytest.mark.xfail(strict=True, reason=reason))
        params.append(pytest.param(case, marks=marks, id=case))
    return params


pytestmark = pytest.mark.skipif(
    not SUITE.is_dir(), reason="SCION suite not fetched: run scripts/fetch-suites"
)


def _expected(ids: list[str]) -> set[str]:
    return {sanitize_id(i) for i in ids}


@pytest.mark.parametrize("case", _params())
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


def test_known_failures_are_cases() -> None:
    assert set(KNOWN_FAILURES) <= set(_case_ids())
