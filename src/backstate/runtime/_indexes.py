"""Secondary indexes: which values of an instance each index holds.

Pure: no I/O. A version maps index names to selectors: a JSONPath into the context
(python-jsonpath), or ``@state`` for the instance's active states (every state string:
``"Playing"`` and ``"Playing.Awaiting x move"``). A selector may reach a string, a
number, or an array of them (each element indexed); anything else is skipped and
reported, never failing the transition.

An index entry is ``(index, kind, number, text)``: kind 0 holds a number, kind 1 a
string, so one database index orders numbers first, then strings.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonpath

from backstate.store import IndexHit, IndexQuery

from ._deployments import NAME
from ._errors import InvalidRequest

STATE_SELECTOR = "@state"
NUMBER, STRING = 0, 1

IndexEntry = tuple[str, int, float, str]


@dataclass(frozen=True)
class IndexSpec:
    name: str
    selector: str
    path: jsonpath.JSONPath | jsonpath.CompoundJSONPath | None  # None: the active states


def compile_selectors(selectors: Mapping[str, Any]) -> tuple[IndexSpec, ...]:
    """Check and compile a version's index selectors; ``invalid-index-selector`` names
    the first bad one."""
    if not isinstance(selectors, Mapping):
        raise InvalidRequest("invalid-index-selector", "index selectors must be an object")
    specs = []
    for name, selector in selectors.items():
        if not isinstance(name, str) or not NAME.match(name):
            raise InvalidRequest(
                "invalid-index-selector", f"index name must match {NAME.pattern}, got {name!r}"
            )
        if not isinstance(selector, str):
            raise InvalidRequest(
                "invalid-index-selector", f"the selector of index {name!r} must be a string"
            )
        if selector == STATE_SELECTOR:
            specs.append(IndexSpec(name, selector, None))
            continue
        try:
            path = jsonpath.compile(selector)
        except jsonpath.JSONPathError as exc:
            first = str(exc).splitlines()[0]
            raise InvalidRequest(
                "invalid-index-selector", f"index {name!r}: {selector!r} is not JSONPath: {first}"
            ) from exc
        specs.append(IndexSpec(name, selector, path))
    return tuple(specs)


def index_entries(
    specs: tuple[IndexSpec, ...], context: Any, state_strings: list[str]
) -> tuple[frozenset[IndexEntry], list[str]]:
    """The entries of one instance, and a message per value that could not be indexed."""
    entries: set[IndexEntry] = set()
    skipped: list[str] = []
    for spec in specs:
        if spec.path is None:
            entries.update((spec.name, STRING, 0.0, s) for s in state_strings)
            continue
        try:
            found = spec.path.findall(context)
        except jsonpath.JSONPathError as exc:
            skipped.append(f"index {spec.name!r}: {spec.selector!r} failed: {exc}")
            continue
        for match in found:
            for value in match if isinstance(match, list) else [match]:
                entry = _entry(spec.name, value)
                if entry is None:
                    skipped.append(
                        f"index {spec.name!r}: {spec.selector!r} selected {_short(value)}, "
                        "which is not a string or a number; not indexed"
                    )
                else:
                    entries.add(entry)
    return frozenset(entries), skipped


def value_state_strings(value: Any) -> list[str]:
    """The state strings of a stored state value (what ``@state`` indexes): every
    active state's dotted path, as a snapshot's ``state_strings``."""
    if isinstance(value, str):
        return [value]
    strings: list[str] = []
    if isinstance(value, Mapping):
        for key, child in value.items():
            strings.append(str(key))
            strings.extend(f"{key}.{path}" for path in value_state_strings(child))
    return strings


def _entry(index: str, value: Any) -> IndexEntry | None:
    if isinstance(value, str):
        return (index, STRING, 0.0, value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        return (index, NUMBER, number, "") if math.isfinite(number) else None
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


OPS = ("eq", "ne", "gt", "gte", "lt", "lte")
MAX_LIMIT = 1000


class IndexPage:
    """Hits as ``(value, instance)`` pairs, and the cursor of the next page (None on
    the last one)."""

    def __init__(self, hits: list[IndexHit], limit: int) -> None:
        self.hits = [(h.value, h.instance) for h in hits]
        last = hits[-1] if hits and len(hits) == limit else None
        self.cursor = (
            None
            if last is None
            else base64.urlsafe_b64encode(
                json.dumps([last.kind, last.number, last.text, last.instance]).encode()
            ).decode()
        )


def index_query(
    machine: str,
    index: str,
    op: str | None,
    value: str | float | None,
    descending: bool,
    limit: int,
    cursor: str | None,
) -> IndexQuery:
    """Check a query's parameters: a string value compares with string entries, a
    number with number entries; with neither op nor value, every entry is listed."""
    if not NAME.match(index):
        raise InvalidRequest("invalid-parameter", f"index name must match {NAME.pattern}")
    if (op is None) != (value is None):
        raise InvalidRequest("invalid-parameter", "op and value go together")
    if op is not None and op not in OPS:
        raise InvalidRequest("invalid-parameter", f"op must be one of {', '.join(OPS)}")
    kind: int | None = None
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InvalidRequest("invalid-parameter", "value must be a string or a number")
        kind = STRING if isinstance(value, str) else NUMBER
        if kind == NUMBER and not math.isfinite(float(value)):
            raise InvalidRequest("invalid-parameter", "value must be a finite number")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest("invalid-parameter", f"limit must be from 1 to {MAX_LIMIT}")
    after: tuple[int, float, str, str] | None = None
    if cursor is not None:
        try:
            k, n, t, i = json.loads(base64.urlsafe_b64decode(cursor.encode()))
            after = (int(k), float(n), str(t), str(i))
        except (ValueError, TypeError) as exc:
            raise InvalidRequest("invalid-parameter", "cursor is not one this server gave") from exc
    return IndexQuery(machine, index, op, kind, value, descending, limit, after)
