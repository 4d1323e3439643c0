"""The JSON text of what the runtime stores and answers: snapshots, events, contexts.

orjson, so that whatever is committed can be read back and answered: its output is
valid UTF-8 (a string with a lone surrogate is refused, ``invalid-unicode``) and nests
at most 254 levels (deeper is refused, ``too-deep``). What callers send (``encode``)
must be JSON: NaN and infinities are refused (``invalid-json``). What machine code makes
of it (``encode_state``) is written the way JavaScript's ``JSON.stringify`` writes it,
as State Backed stores it: NaN and infinities become ``null``, keys become strings. The
standard library takes over only for integers beyond 64 bits (and, for ``encode``, to
tell a real ``null`` from a NaN that orjson wrote as one).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from ._errors import InvalidRequest

_strict = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_lenient = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode(value: Any, what: str) -> str:
    """Compact JSON text of what a caller sent; ``InvalidRequest`` (``invalid-json``,
    ``invalid-unicode`` or ``too-deep``) unless it is JSON that can be stored."""
    try:
        data = orjson.dumps(value)
    except TypeError as exc:
        _refuse_unstorable(exc, what)
        data = b"null"  # integers beyond 64 bits, keys that are not strings: see below
    if b"null" not in data:
        return data.decode()
    return _standard(_strict, value, what)


def encode_state(value: Any, what: str) -> str:
    """JSON text of a snapshot (or anything else machine code produced); see above."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError as exc:
        _refuse_unstorable(exc, what)
    return _standard(_lenient, value, what)


def _refuse_unstorable(exc: TypeError, what: str) -> None:
    message = str(exc)
    if "Recursion limit" in message:
        raise InvalidRequest("too-deep", f"{what} is nested too deeply") from None
    if "surrogates" in message:
        raise InvalidRequest(
            "invalid-unicode", f"{what} has a string that is not valid Unicode"
        ) from None


def _standard(encoder: Any, value: Any, what: str) -> str:
    try:
        text: str = encoder(value)
        text.encode()  # a lone surrogate
    except UnicodeEncodeError:
        raise InvalidRequest(
            "invalid-unicode", f"{what} has a string that is not valid Unicode"
        ) from None
    except RecursionError:
        raise InvalidRequest("too-deep", f"{what} is nested too deeply") from None
    except (TypeError, ValueError) as exc:
        raise InvalidRequest("invalid-json", f"{what} must be JSON: {exc}") from None
    return text
