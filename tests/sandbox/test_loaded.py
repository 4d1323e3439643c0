"""``Loaded``: what a worker reports of a version is checked before it is stored,
outline included (a worker's output is untrusted)."""

from __future__ import annotations

import pytest

from backstate.machine import definition, load_file
from backstate.sandbox._effects import BadOutput
from backstate.sandbox._sandbox import Loaded
from tests.server.test_e2e import TOGGLER


def test_a_description_round_trips_with_its_outline() -> None:
    described = definition(load_file(TOGGLER))
    loaded = Loaded.from_json(described)
    assert loaded.outline == described["outline"]
    assert loaded.to_json() == described


def test_a_description_without_an_outline_is_still_one() -> None:
    described = definition(load_file(TOGGLER))
    del described["outline"]
    assert Loaded.from_json(described).outline is None


@pytest.mark.parametrize(
    "outline", [[], {"id": 1}, {"id": "x", "key": "", "type": "atomic", "states": "no"}]
)
def test_a_bad_outline_is_refused(outline: object) -> None:
    described = definition(load_file(TOGGLER))
    with pytest.raises(BadOutput):
        Loaded.from_json({**described, "outline": outline})
