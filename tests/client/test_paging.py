"""``paginate`` and ``apaginate``: every item of a listing, across pages of 100, in
order and once each, fetching the next page only when the last one is used up."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from backstate.client import AsyncClient, Client, Page, apaginate, paginate
from tests.server.test_e2e import Server

from .conftest import SAY_SOURCE


def _fill(client: Client, machine: str) -> list[str]:
    """A machine with 230 instances (three pages) and one instance with 205 transitions."""
    client.machines.create(machine)
    client.machine_versions.create(machine, SAY_SOURCE, client_info="say")
    names = [f"i-{n:03d}" for n in range(230)]
    for name in names:
        client.instances.create(machine, name)
    for _ in range(204):
        client.instances.send_event(machine, names[0], "say")
    return names


def test_paginate_follows_cursors_lazily(client: Client, name: str) -> None:
    names = _fill(client, name)
    assert [i.slug for i in paginate(client.instances.list, name)] == names
    events = [t.event["type"] for t in paginate(client.instances.list_transitions, name, names[0])]
    assert events == ["xstate.init", *["say"] * 204]
    assert name in {m.slug for m in paginate(client.machines.list)}

    fetched: list[str | None] = []

    def counted(machine: str, *, cursor: str | None = None) -> Page[Any]:
        fetched.append(cursor)
        return client.instances.list(machine, cursor=cursor)

    first = list(itertools.islice(paginate(counted, name), 100))
    assert [i.slug for i in first] == names[:100] and fetched == [None]  # one page so far
    assert len(list(paginate(counted, name))) == 230 and len(fetched) == 1 + 3


def test_apaginate_follows_cursors(server: Server, client: Client, name: str) -> None:
    names = _fill(client, name)

    async def run() -> tuple[list[str], list[str]]:
        async with AsyncClient.from_credentials(server.creds_path, claims={"sub": "a"}) as c:
            slugs = [i.slug async for i in apaginate(c.instances.list, name)]
            events = [
                t.event["type"]
                async for t in apaginate(c.instances.list_transitions, name, names[0])
            ]
            return slugs, events

    slugs, events = asyncio.run(run())
    assert slugs == names
    assert events == ["xstate.init", *["say"] * 204]
