"""The claim-mapping language of IdPs and token providers.

A key ending in ``.$`` names an output key (without the suffix) whose value is a
JSONPath into the input; every other key is copied as a literal, except that objects
(also inside lists) are mapped in turn, so their ``.$`` keys work at any depth.

What State Backed leaves unsaid, decided here:
- a singular path (only names and indexes: ``$.a.b``, ``$.a[0]``, ``$['x']``) gives the
  matched value, and leaves the key out when nothing matches;
- any other path (wildcards, slices, filters, ``..``, unions) gives the list of all
  matches, possibly empty;
- ``x`` and ``x.$`` in one object is an error, as is a path that is not a string or
  does not parse.

The docs' own example maps ``"roles": "$.auth.roles"`` without ``.$`` yet shows the
value resolved; that contradicts their rule, and we keep the rule: it stays a literal.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jsonpath
from jsonpath import JSONPath, JSONPathError

from ._errors import AuthError

_SUFFIX = ".$"


def _error(message: str) -> AuthError:
    return AuthError("invalid-mapping", 400, message, "mapping")


@functools.lru_cache(maxsize=1024)
def _compile(path: str) -> tuple[Any, bool]:
    try:
        query = jsonpath.compile(path)
    except JSONPathError as error:
        raise _error(f"bad JSONPath {path!r}: {error}") from None
    return query, isinstance(query, JSONPath) and query.singular_query()


def validate_mapping(mapping: Any) -> None:
    """Raise ``AuthError('invalid-mapping')`` unless ``mapping`` is a well-formed mapping."""
    if not isinstance(mapping, Mapping):
        raise _error("a mapping is a JSON object")
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise _error("mapping keys are strings")
        if key.endswith(_SUFFIX):
            if key[: -len(_SUFFIX)] in mapping:
                raise _error(f"{key[: -len(_SUFFIX)]!r} is both a literal and a path")
            if not isinstance(value, str):
                raise _error(f"the value of {key!r} must be a JSONPath string")
            _compile(value)
        else:
            _validate_literal(value)


def _validate_literal(value: Any) -> None:
    if isinstance(value, Mapping):
        validate_mapping(value)
    elif isinstance(value, list):
        for item in value:
            _validate_literal(item)


def apply_mapping(mapping: Mapping[str, Any], source: Any) -> dict[str, Any]:
    """The object ``mapping`` makes from ``source`` (for example an IdP token's claims)."""
    validate_mapping(mapping)
    return _apply(mapping, source)


def _apply(mapping: Mapping[str, Any], source: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in mapping.items():
        if key.endswith(_SUFFIX):
            query, singular = _compile(value)
            matches = query.findall(source)
            if not singular:
                result[key[: -len(_SUFFIX)]] = matches
            elif matches:
                result[key[: -len(_SUFFIX)]] = matches[0]
        else:
            result[key] = _literal(value, source)
    return result


def _literal(value: Any, source: Any) -> Any:
    if isinstance(value, Mapping):
        return _apply(value, source)
    if isinstance(value, list):
        return [_literal(item, source) for item in value]
    return value
