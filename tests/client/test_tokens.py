"""Tokens are replaced before they expire, never after; the refresh rule itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest

from backstate.client import AsyncClient, Auth, Client, ExchangeAuth, KeyAuth
from backstate.client._auth import TokenCache, refresh_time
from tests.server.test_e2e import Server

LIFETIME_S = 4
RUN_S = 7.0


def claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


class Traffic:
    """Every request the client sends (with the exp of its token) and every status."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, float]] = []  # (when, exp of the bearer token)
        self.statuses: list[int] = []

    def request(self, request: httpx.Request) -> None:
        if "authorization" in request.headers:  # not the token exchange itself
            token = request.headers["authorization"].removeprefix("Bearer ")
            self.sent.append((time.time(), claims(token)["exp"]))

    def response(self, response: httpx.Response) -> None:
        self.statuses.append(response.status_code)

    async def arequest(self, request: httpx.Request) -> None:
        self.request(request)

    async def aresponse(self, response: httpx.Response) -> None:
        self.response(response)


class Minted:
    """Tokens the auth made: when, and their exp."""

    def __init__(self) -> None:
        self.tokens: list[tuple[float, float]] = []

    def record(self, token: str) -> str:
        self.tokens.append((time.time(), claims(token)["exp"]))
        return token


def check(traffic: Traffic, minted: Minted) -> None:
    assert traffic.statuses and set(traffic.statuses) == {200}, traffic.statuses
    # Every request went out with a token that had not expired (the server would still
    # take one up to 5 s late: that slack is not what makes this pass).
    assert all(when < exp for when, exp in traffic.sent)
    # Several tokens, each one fetched before the one it replaced expired.
    assert len(minted.tokens) >= 3, minted.tokens
    for (_, old_exp), (new_at, _) in zip(minted.tokens, minted.tokens[1:], strict=False):
        assert new_at < old_exp


def short_lived(server: Server, minted: Minted, sid: str) -> Callable[[], str]:
    def token() -> str:
        return minted.record(server.token({"sid": sid}, ttl=LIFETIME_S))

    return token


def exchanging(server: Server, client: Client, minted: Minted, sid: str) -> ExchangeAuth:
    """An IdP whose tokens live ``LIFETIME_S``; exchanged tokens expire with them."""
    secret, issuer, service = f"{sid}-secret-long-enough-for-hs256", f"https://{sid}/", sid
    client.identity_providers.upsert(
        iss=issuer, algs=["HS256"], key=secret.encode(), mapping={"sid.$": "$.sub"}
    )
    client.token_providers.upsert(service, key_id=server.creds["keyId"], mapping={"sid.$": "$.sid"})

    def idp_token() -> str:
        now = int(time.time())
        exp = now + LIFETIME_S
        minted.tokens.append((time.time(), exp))
        return jwt.encode({"iss": issuer, "sub": sid, "iat": now, "exp": exp}, secret, "HS256")

    return ExchangeAuth(idp_token, server.creds["orgId"], service)


@pytest.mark.parametrize("source", ["function", "key", "exchange"])
def test_sync_client_refreshes_before_expiry(
    server: Server, client: Client, name: str, source: str
) -> None:
    minted = Minted()
    auth: Auth
    if source == "function":
        auth = short_lived(server, minted, name)
    elif source == "key":
        key = client.keys.create(name, use="production")
        signer = KeyAuth(key.id, key.key, {"sid": name}, expires_in_s=LIFETIME_S)
        auth = lambda: minted.record(signer.sign(time.time()))  # noqa: E731
    else:
        auth = exchanging(server, client, minted, name)
    traffic = Traffic()
    hooks = {"request": [traffic.request], "response": [traffic.response]}
    with (
        httpx.Client(event_hooks=hooks) as http,
        Client(server.url, auth=auth, http_client=http) as c,
    ):
        c.instances.create("toggler", name)
        deadline = time.monotonic() + RUN_S
        while time.monotonic() < deadline:
            c.instances.get("toggler", name)
            time.sleep(0.1)
        assert c.tokens_obtained == len(minted.tokens)
    check(traffic, minted)


def test_async_client_refreshes_before_expiry_with_an_async_function(
    server: Server, name: str
) -> None:
    minted = Minted()
    sync_token = short_lived(server, minted, name)

    async def token() -> str:
        await asyncio.sleep(0)
        return sync_token()

    traffic = Traffic()

    async def run() -> None:
        hooks = {"request": [traffic.arequest], "response": [traffic.aresponse]}
        async with (
            httpx.AsyncClient(event_hooks=hooks) as http,
            AsyncClient(server.url, auth=token, http_client=http) as c,
        ):
            await c.instances.create("toggler", name)
            deadline = time.monotonic() + RUN_S
            while time.monotonic() < deadline:
                # concurrent requests share one refresh (single flight)
                await asyncio.gather(*(c.instances.get("toggler", name) for _ in range(3)))
                await asyncio.sleep(0.1)

    asyncio.run(run())
    check(traffic, minted)
    assert len(minted.tokens) <= RUN_S / (LIFETIME_S / 2) + 2


@pytest.mark.parametrize(
    ("lifetime", "replaced_after"),
    [(3600, 2880), (86400, 69120), (60, 30), (100, 50), (200, 160), (10, 5), (4, 2)],
)
def test_refresh_rule(lifetime: int, replaced_after: float) -> None:
    now = 1_800_000_000
    token = jwt.encode({"iat": now, "exp": now + lifetime}, "k" * 32, "HS256")
    assert refresh_time(token, now) == pytest.approx(now + replaced_after)


def test_refresh_rule_edges() -> None:
    now = 1_800_000_000.0
    no_iat = jwt.encode({"exp": int(now) + 100}, "k" * 32, "HS256")
    assert refresh_time(no_iat, now) == pytest.approx(now + 50)
    assert refresh_time("opaque-token", now) == float("inf")
    assert refresh_time(jwt.encode({"sub": "x"}, "k" * 32, "HS256"), now) == float("inf")
    expired = jwt.encode({"iat": int(now) - 100, "exp": int(now) - 50}, "k" * 32, "HS256")
    assert refresh_time(expired, now) < now

    cache = TokenCache()
    assert cache.current(now) is None
    fresh = jwt.encode({"iat": int(now), "exp": int(now) + 60}, "k" * 32, "HS256")
    cache.store(fresh, now)
    assert cache.current(now + 29) == fresh
    assert cache.current(now + 30) is None
    assert cache.obtained == 1
