"""``AsyncClient`` runs the same flows as ``Client``: every namespace once, on asyncio."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from backstate.client import (
    AnonymousAuth,
    AsyncClient,
    Conflict,
    ExchangeAuth,
    KeyAuth,
    NotFound,
    RejectedByMachineAuthorizer,
)
from tests.server.test_e2e import Server

from .conftest import SAY_SOURCE


def admin(server: Server) -> AsyncClient:
    return AsyncClient.from_credentials(server.creds_path, claims={"sub": "admin"})


def test_machines_versions_and_instances(server: Server, name: str) -> None:
    async def run() -> None:
        async with admin(server) as client:
            await client.machines.create(name)
            assert (await client.machines.get(name)).current_version is None
            assert name in {m.slug for m in (await client.machines.list()).items}
            one = await client.machine_versions.create(name, SAY_SOURCE, client_info="one")
            upload = await client.machine_versions.provisionally_create(name, gzip=True)
            await client.upload_code(upload, SAY_SOURCE)
            two = await client.machine_versions.finalize(name, upload.id, client_info="two")
            assert [v.id for v in (await client.machine_versions.list(name)).items] == [one, two]

            created = await client.instances.get_or_create(name, "i", context={"secret": "a"})
            got = await client.instances.get_or_create(name, "i", context={"secret": "b"})
            assert created == got
            with pytest.raises(Conflict):
                await client.instances.create(name, "i")
            said = await client.instances.send_event(name, "i", {"type": "say", "text": "x"})
            assert said.public_context == {"said": 1}
            assert await client.instances.get(name, "i") == said
            assert (await client.instances.get_admin(name, "i")).context["secret"] == "a"
            assert len((await client.instances.list_transitions(name, "i")).items) == 2
            assert [i.slug for i in (await client.instances.list(name)).items] == ["i"]
            await client.instances.set_status(name, "i", "paused")
            with pytest.raises(Conflict):
                await client.instances.send_event(name, "i", "say")
            await client.instances.set_status(name, "i", "running")
            await client.instances.delete(name, "i", danger_data_will_be_deleted_forever=True)
            with pytest.raises(NotFound):
                await client.instances.get(name, "i")
            await client.machines.delete(name, danger_data_will_be_deleted_forever=True)

    asyncio.run(run())


def test_logs(server: Server, name: str) -> None:
    async def run() -> None:
        start = datetime.now(UTC)
        async with admin(server) as client:
            await client.instances.create("say", name)
            await client.instances.send_event("say", name, {"type": "say", "text": "async"})
            seen = []
            async for entry in client.logs.watch(start, instance=name, poll_interval_s=0.05):
                seen.append(entry.log)
                break
            assert seen == ["said async"]
            logs = await client.logs.retrieve(start, machine="say", instance=name)
            assert [e.log for e in logs.entries] == ["said async"]
            ended = [
                e
                async for e in client.logs.watch(
                    start - timedelta(hours=2), to=start - timedelta(hours=1)
                )
            ]
            assert ended == []

    asyncio.run(run())


def test_identity_namespaces_and_token_sources(server: Server, name: str) -> None:
    secret, issuer, service = f"{name}-a-secret-of-some-length", f"https://{name}/", name
    org = server.creds["orgId"]

    async def idp_token() -> str:
        claims = {"iss": issuer, "sub": name, "exp": int(time.time()) + 60}
        return jwt.encode(claims, secret, algorithm="HS256")

    async def run() -> None:
        async with admin(server) as client:
            assert [o.id for o in (await client.orgs.list()).items] == [org]
            created = await client.orgs.create(name)
            assert created.admin_key is not None
            key = await client.keys.create(name, scopes=["state.read", "instances.write"])
            assert key.id in {k.id for k in (await client.keys.list()).items}
            await client.identity_providers.upsert(
                iss=issuer, algs=["HS256"], key=secret.encode(), mapping={"sub.$": "$.sub"}
            )
            assert issuer in {i.iss for i in (await client.identity_providers.list()).items}
            await client.token_providers.upsert(service, key_id=key.id, mapping={"sid.$": "$.sub"})
            assert service in {p.service for p in (await client.token_providers.list()).items}
            token = await client.tokens.exchange(org, service, await idp_token())
            async with AsyncClient(server.url, auth=token) as exchanged:
                assert (await exchanged.instances.create("toggler", name)).value == "on"
            async with AsyncClient(server.url, auth=ExchangeAuth(idp_token, org, service)) as c:
                assert (await c.instances.send_event("toggler", name, "toggle")).value == "off"
            await client.token_providers.delete(service)
            await client.identity_providers.delete(iss=issuer)
            await client.keys.delete(key.id)
        async with AsyncClient(server.url, auth=AnonymousAuth(org, session_id=name)) as anon:
            assert (await anon.instances.get("toggler", name)).value == "off"
        stranger = KeyAuth(server.creds["keyId"], server.creds["secret"], {"sid": "stranger"})
        async with AsyncClient(server.url, auth=stranger) as other:
            with pytest.raises(RejectedByMachineAuthorizer):
                await other.instances.get("toggler", name)

    asyncio.run(run())
