"""The sans-I/O core: requests as data, operations as generators of requests.

A ``Call`` describes one HTTP request and how to read its answer; it performs no I/O.
An operation is a ``Flow``: a generator that yields calls and gets back each call's
parsed result (or has the call's ``ApiError`` thrown in), then returns its value. Most
flows are a single call; ``get_or_create`` and the three-step upload are several. The
sync ``Client`` and the ``AsyncClient`` each run flows with their own transport, so
every request is built, and every answer read, in one place.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ._errors import ApiError, error_from_response

T = TypeVar("T")

Flow = Generator["Call[Any]", Any, T]


@dataclass(frozen=True)
class Upload:
    """A multipart file part."""

    filename: str
    content: bytes
    content_type: str


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str  # under the API host, or an absolute URL (code uploads)
    parse: Callable[[Any], T]  # the decoded JSON body (None when empty) -> the result
    params: Mapping[str, str] = field(default_factory=dict)
    json: Mapping[str, Any] | None = None
    form: Mapping[str, str] | None = None  # url-encoded, or multipart beside ``file``
    file: Upload | None = None
    authenticated: bool = True  # send the bearer token and the org/act headers
    headers: Mapping[str, str] = field(default_factory=dict)
    pause_s: float = 0.0  # wait this long before sending it (a retry's backoff)

    def url(self, api_host: str) -> str:
        if self.path.startswith(("http://", "https://")):
            return self.path
        return api_host.rstrip("/") + self.path

    def result(self, status: int, content: bytes) -> T:
        """The parsed answer, or the ``ApiError`` for an error status."""
        if status >= 400:
            raise error_from_response(status, content)
        return self.parse(json.loads(content) if content.strip() else None)

    def __iter__(self) -> Generator[Call[Any], Any, T]:
        """``value = yield from call`` inside a flow: the call's typed result."""
        value: T = yield self
        return value


def nothing(body: Any) -> None:
    """For 201 and 204 answers (State Backed's client returns nothing for them)."""


def single(call: Call[T]) -> Flow[T]:
    return (yield from call)


def run_sync(flow: Flow[T], execute: Callable[[Call[Any]], Any]) -> T:
    """Drive a flow with a blocking transport; ``execute`` raises ``ApiError``s."""
    try:
        call = next(flow)
        while True:
            try:
                value = execute(call)
            except ApiError as error:
                call = flow.throw(error)
            else:
                call = flow.send(value)
    except StopIteration as stop:
        result: T = stop.value
        return result


async def run_async(flow: Flow[T], execute: Callable[[Call[Any]], Awaitable[Any]]) -> T:
    """Drive a flow with an asynchronous transport; ``execute`` raises ``ApiError``s."""
    try:
        call = next(flow)
        while True:
            try:
                value = await execute(call)
            except ApiError as error:
                call = flow.throw(error)
            else:
                call = flow.send(value)
    except StopIteration as stop:
        result: T = stop.value
        return result
