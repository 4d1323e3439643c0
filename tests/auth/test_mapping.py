"""The ``.$`` mapping language of IdPs and token providers."""

from __future__ import annotations

from typing import Any

import pytest

from backstate.auth import AuthError, apply_mapping, validate_mapping

CLAIMS = {
    "sub": "abc",
    "auth": {"roles": ["role-1", "role-2"]},
    "weird key": 7,
    "orgs": [{"id": "o1", "admin": True}, {"id": "o2", "admin": False}],
    "nothing": None,
}


def test_the_docs_example() -> None:
    mapping = {
        "sub.$": "$.sub",
        "authInfo": {"source": "my-provider", "roles.$": "$.auth.roles"},
    }
    assert apply_mapping(mapping, CLAIMS) == {
        "sub": "abc",
        "authInfo": {"source": "my-provider", "roles": ["role-1", "role-2"]},
    }


def test_a_path_without_the_suffix_is_a_literal() -> None:
    # The docs' example writes "roles": "$.auth.roles" and shows it resolved; the rule
    # they state (only ".$" keys are paths) wins.
    assert apply_mapping({"roles": "$.auth.roles"}, CLAIMS) == {"roles": "$.auth.roles"}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("$.sub", "abc"),
        ("$.auth.roles[0]", "role-1"),
        ("$.auth.roles[-1]", "role-2"),
        ("$['weird key']", 7),
        ("$.orgs[1].id", "o2"),
        ("$.nothing", None),
        ("$", CLAIMS),
    ],
)
def test_singular_paths_give_the_value(path: str, value: Any) -> None:
    assert apply_mapping({"x.$": path}, CLAIMS) == {"x": value}


@pytest.mark.parametrize(
    "path", ["$.missing", "$.auth.missing.deeper", "$.auth.roles[5]", "$.sub[0]"]
)
def test_a_singular_path_that_matches_nothing_leaves_the_key_out(path: str) -> None:
    assert apply_mapping({"x.$": path, "kept": 1}, CLAIMS) == {"kept": 1}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("$.auth.roles[*]", ["role-1", "role-2"]),
        ("$.orgs[*].id", ["o1", "o2"]),
        ("$.orgs[?@.admin == true].id", ["o1"]),
        ("$..id", ["o1", "o2"]),
        ("$.missing[*]", []),
    ],
)
def test_other_paths_give_the_list_of_matches(path: str, value: list[Any]) -> None:
    assert apply_mapping({"x.$": path}, CLAIMS) == {"x": value}


def test_literals_nest_and_recurse_through_lists() -> None:
    mapping = {
        "n": 1,
        "flag": False,
        "none": None,
        "list": [1, "two", {"sub.$": "$.sub"}, [{"role.$": "$.auth.roles[1]"}]],
        "deep": {"deeper": {"sub.$": "$.sub", "const": "c"}},
    }
    assert apply_mapping(mapping, CLAIMS) == {
        "n": 1,
        "flag": False,
        "none": None,
        "list": [1, "two", {"sub": "abc"}, [{"role": "role-2"}]],
        "deep": {"deeper": {"sub": "abc", "const": "c"}},
    }


def test_an_empty_mapping_gives_an_empty_object() -> None:
    assert apply_mapping({}, CLAIMS) == {}


@pytest.mark.parametrize(
    "mapping",
    [
        {"x.$": 5},
        {"x.$": ["$.sub"]},
        {"x.$": "$.a["},
        {"x.$": "$..."},
        {"x": 1, "x.$": "$.sub"},
        {"outer": {"x.$": None}},
        {"outer": [{"x.$": "$["}]},
        [],
        "not an object",
    ],
)
def test_bad_mappings(mapping: Any) -> None:
    with pytest.raises(AuthError) as caught:
        validate_mapping(mapping)
    assert (caught.value.code, caught.value.status, caught.value.parameter) == (
        "invalid-mapping",
        400,
        "mapping",
    )
    with pytest.raises(AuthError):
        apply_mapping(mapping, CLAIMS)
