"""What the host makes of a worker's snapshot text (``_sandbox._snapshot_text``): it is
stored as it came only when it says nothing but the snapshot, within the runtime's
limits; anything else is resolved and encoded again by the host, or refused."""

from __future__ import annotations

import json

import pytest

from backstate.chart import assign, create_machine
from backstate.runtime._steps import MAX_CONTEXT_BYTES
from backstate.sandbox._effects import BadOutput
from backstate.sandbox._sandbox import _snapshot_text

MACHINE = create_machine(
    {
        "id": "toggle",
        "initial": "off",
        "context": {"count": 0},
        "states": {
            "off": {"on": {"flip": {"target": "on", "actions": assign({"count": 1})}}},
            "on": {"on": {"flip": "off"}},
        },
    }
)


def _text(**changes: object) -> str:
    data = MACHINE.initial_transition()[0].to_json()
    data.update(changes)
    return json.dumps(data, ensure_ascii=False)


def test_the_text_of_a_plain_snapshot_is_kept_for_the_commit() -> None:
    text = _text(value="on", context={"count": 3, "name": "é😀"})
    snapshot = _snapshot_text(MACHINE, text)
    assert snapshot.json_text == text
    assert snapshot.value == "on" and snapshot.context == {"count": 3, "name": "é😀"}


@pytest.mark.parametrize(
    "text",
    [
        _text(extra="stored only if the host made it"),
        _text(context={"deep": json.loads("[" * 300 + "]" * 300)}),
        _text(context={"big": "x" * MAX_CONTEXT_BYTES}),
        _text(value={"on": {}}),  # a form of "on" that the host writes as "on"
    ],
    ids=["extra-key", "too-deep", "too-large", "value-not-as-the-host-writes-it"],
)
def test_any_other_text_is_not_stored_as_it_came(text: str) -> None:
    snapshot = _snapshot_text(MACHINE, text)
    assert snapshot.json_text is None  # the commit encodes (and checks) it again
    assert "extra" not in snapshot.to_json()


@pytest.mark.parametrize(
    "text",
    [
        '{"value": "on"',
        '{"value": "on", "context": "\\ud800"}',
        _text(value="nowhere"),
        _text(status="sleeping"),
        123,
    ],
    ids=["not-json", "lone-surrogate", "unknown-state", "bad-status", "not-a-string"],
)
def test_garbage_is_refused(text: object) -> None:
    with pytest.raises(BadOutput):
        _snapshot_text(MACHINE, text)
