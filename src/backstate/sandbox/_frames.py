"""The wire between the server and a worker: length-prefixed JSON frames on a pipe.

A frame is a 4-byte big-endian length and that many bytes of JSON. Either side may
write many frames at once (the server sends a round's calls together, a worker its
replies). The reader refuses a frame longer than its limit before reading it, and
anything that is not a frame of JSON: a worker that sends garbage is cut off.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import orjson

HEADER = struct.Struct(">I")
MAX_FRAME = 32 * 1024 * 1024  # what a worker may send in one frame


class FrameError(Exception):
    """The other side sent something that is not a frame of JSON (or too large)."""


def pack(message: Any) -> bytes:
    try:
        data = orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # integers beyond 64 bits
        data = json.dumps(message, separators=(",", ":")).encode()
    return HEADER.pack(len(data)) + data


class Unpacker:
    """Frames out of a byte stream, as they complete."""

    def __init__(self, limit: int = MAX_FRAME) -> None:
        self.limit = limit
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        buffer = self._buffer
        buffer += data
        view = memoryview(buffer)
        messages = []
        start, size = 0, len(buffer)
        try:
            while size - start >= HEADER.size:
                (length,) = HEADER.unpack_from(buffer, start)
                if length > self.limit:
                    raise FrameError(f"a frame of {length} bytes (the limit is {self.limit})")
                end = start + HEADER.size + length
                if size < end:
                    break
                try:
                    messages.append(orjson.loads(view[start + HEADER.size : end]))
                except orjson.JSONDecodeError as exc:
                    raise FrameError(f"a frame that is not JSON: {exc}") from None
                start = end
        finally:
            view.release()
        del buffer[:start]  # once per read, not once per frame
        return messages
