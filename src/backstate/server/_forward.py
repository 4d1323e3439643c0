"""Requests for an instance another node runs are forwarded to that node (many nodes on
one PostgreSQL store, see backstate.runtime._cluster).

The request goes as it came (method, path, query, headers, body) to the owner's URL
from the ``nodes`` table, and its answer is relayed as is. A request for an instance
whose shard no node runs yet (its owner died and the lease has not expired, or a node
is recovering it) waits up to ``WAIT_FOR_OWNER`` seconds for one, then gets a 503
``store-unavailable``. A forwarded request is never forwarded again.
"""

from __future__ import annotations

import asyncio
import time

import httpx
from starlette.requests import Request
from starlette.responses import Response

from backstate.runtime import Cluster, Unavailable
from backstate.store import InstanceKey

FORWARDED_HEADER = "x-backstate-forwarded"
WAIT_FOR_OWNER = 3.0
FORWARD_TIMEOUT = 120.0  # longer than the step timeout a send may wait for
_HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}


class Forwarder:
    def __init__(self, cluster: Cluster | None) -> None:
        self.cluster = cluster
        self._client: httpx.AsyncClient | None = None

    async def route(self, request: Request, key: InstanceKey) -> Response | None:
        """None: this node runs ``key`` (or there is only one node); else the answer."""
        cluster = self.cluster
        if cluster is None:
            return None
        deadline = time.monotonic() + WAIT_FOR_OWNER
        while not cluster.owns(key):
            url = cluster.owner_url(key)
            if url is not None and FORWARDED_HEADER not in request.headers:
                return await self._forward(request, url)
            if time.monotonic() > deadline:
                raise Unavailable(
                    "store-unavailable", f"no node runs {key[0]}/{key[1]} yet; retry shortly"
                )
            await asyncio.sleep(0.1)
        return None

    async def _forward(self, request: Request, base: str) -> Response:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=FORWARD_TIMEOUT)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        headers[FORWARDED_HEADER] = "1"
        url = base.rstrip("/") + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        try:
            answer = await self._client.request(
                request.method, url, headers=headers, content=await request.body()
            )
        except httpx.HTTPError as exc:
            raise Unavailable(
                "store-unavailable", f"the node running this instance did not answer: {exc}"
            ) from exc
        relayed = {
            k: v
            for k, v in answer.headers.items()
            if k.lower() not in _HOP_HEADERS | {"content-encoding"}
        }
        return Response(answer.content, status_code=answer.status_code, headers=relayed)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
