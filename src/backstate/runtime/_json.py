"""The JSON text of what the runtime stores and answers: snapshots, events, contexts.

One encoder, so that whatever is committed can be read back and answered: orjson, whose
output is valid UTF-8 (a string with a lone surrogate is refused), with the standard
library only to tell NaN and infinities (which orjson writes as ``null``) from a real
``null`` and for integers beyond 64 bits. Nesting deeper than orjson's limit (254
levels) is refused as ``too-deep``.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from ._errors import InvalidRequest

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def encode(value: Any, what: str) -> str:
    """Compact JSON text of ``value``; ``InvalidRequest`` (``invalid-json``,
    ``invalid-unicode`` or ``too-deep``) unless it is JSON that can be stored."""
    try:
        data = orjson.dumps(value)
    except TypeError as exc:
        message = str(exc)
        if "Recursion limit" in message:
            raise InvalidRequest("too-deep", f"{what} is nested too deeply") from None
        if "surrogates" in message:
            raise InvalidRequest(
                "invalid-unicode", f"{what} has a string that is not valid Unicode"
            ) from None
        data = b"null"  # integers beyond 64 bits, keys that are not strings: see below
    if b"null" not in data:
        return data.decode()
    try:
        text = _encode(value)
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
