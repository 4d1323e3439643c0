"""Why an event selected no transition (``_unhandled``), and which code raised
(``_culprit``): what a newcomer is told instead of a silent success or a bare error."""

from __future__ import annotations

from typing import Any

import pytest

from backstate.chart import ExecutionError, assign, not_, setup
from backstate.chart._unhandled import checked, sentence


def _never(context: Any, event: Any) -> bool:
    return False


def _always(context: Any, event: Any) -> bool:
    return True


MACHINE = setup(
    guards={"isManager": _never, "isLate": _always},
).create_machine(
    {
        "id": "po",
        "initial": "draft",
        "states": {
            "draft": {"on": {"submit": "review", "cancel": "done"}},
            "review": {
                "type": "parallel",
                "states": {
                    "legal": {
                        "on": {"approve": {"guard": "isManager", "target": ".ok"}},
                        "initial": "waiting",
                        "states": {"waiting": {}, "ok": {}},
                    },
                    "finance": {
                        "on": {"approve": {"guard": not_("isLate"), "target": ".ok"}},
                        "initial": "waiting",
                        "states": {"waiting": {}, "ok": {}},
                    },
                },
            },
            "done": {"type": "final"},
        },
    }
)


def test_an_event_no_state_accepts_says_what_they_accept_and_the_close_match() -> None:
    start, _ = MACHINE.initial_transition()
    after, effects = MACHINE.transition(start, "submitt")
    assert after.value == "draft" and effects == []
    assert after.unhandled == {
        "reason": "no-transition",
        "eventType": "submitt",
        "states": ["draft"],
        "accepts": ["cancel", "submit"],
    }
    assert sentence(after.unhandled) == (
        "no transition for 'submitt' in state draft, which accepts cancel, submit "
        "(did you mean 'submit'?)"
    )


def test_guards_that_returned_false_are_named_as_written() -> None:
    start, _ = MACHINE.initial_transition()
    review, _ = MACHINE.transition(start, "submit")
    assert review.unhandled is None
    after, _ = MACHINE.transition(review, "approve")
    assert after.unhandled is not None
    assert after.unhandled["reason"] == "guards-false"
    assert after.unhandled["guards"] == ["isManager", "not(isLate)"]
    assert sentence(after.unhandled) == (
        "no transition for 'approve' in states review.legal.waiting, review.finance.waiting: "
        "guards 'isManager' and 'not(isLate)' returned false"
    )


def test_a_transition_taken_leaves_no_explanation() -> None:
    start, _ = MACHINE.initial_transition()
    assert MACHINE.transition(start, "cancel")[0].unhandled is None


def test_an_explanation_from_a_worker_is_checked() -> None:
    good = {"reason": "guards-false", "eventType": "e", "states": ["a"], "guards": ["g"]}
    assert checked(good) == good
    for bad in (
        None,
        {"reason": "done", "eventType": "e"},
        {"reason": "no-transition", "eventType": 3},
        {"reason": "no-transition", "eventType": "e", "states": "a"},
        {"reason": "no-transition", "eventType": "e", "accepts": ["x" * 10_000]},
    ):
        with pytest.raises(ValueError):
            checked(bad)


def _divide(context: Any, event: Any) -> dict[str, Any]:
    return {"n": 1 / 0}


def test_a_raising_assign_is_named_with_its_line() -> None:
    m = setup(actions={"total": assign(_divide)}).create_machine(
        {"initial": "a", "context": {}, "states": {"a": {"on": {"go": {"actions": "total"}}}}}
    )
    start, _ = m.initial_transition()
    with pytest.raises(ExecutionError) as info:
        m.transition(start, "go")
    assert info.value.code == "action-failed"
    assert info.value.message.startswith(
        "assign 'total' raised ZeroDivisionError: division by zero (test_unhandled.py:"
    )
    assert info.value.message.endswith(" in _divide)")
