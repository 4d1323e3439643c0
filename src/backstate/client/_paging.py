"""Every item of a listing, page after page: ``paginate(client.instances.list, "toggler")``.

The listings (machines, versions, instances, index queries, transitions, orgs, keys,
identity and token providers) answer one ``Page`` at a time with a cursor for the next;
these follow the cursors, fetching a page only when the previous one is used up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from ._models import Page

T = TypeVar("T")


def paginate(fetch: Callable[..., Page[T]], *args: Any, **kwargs: Any) -> Iterator[T]:
    """``fetch(*args, cursor=..., **kwargs)`` for each page, from the first to the last."""
    cursor: str | None = None
    while True:
        page = fetch(*args, cursor=cursor, **kwargs)
        yield from page.items
        if page.cursor is None:
            return
        cursor = page.cursor


async def apaginate(
    fetch: Callable[..., Awaitable[Page[T]]], *args: Any, **kwargs: Any
) -> AsyncIterator[T]:
    """``paginate`` for ``AsyncClient``: ``async for i in apaginate(client.orgs.list)``."""
    cursor: str | None = None
    while True:
        page = await fetch(*args, cursor=cursor, **kwargs)
        for item in page.items:
            yield item
        if page.cursor is None:
            return
        cursor = page.cursor
