"""Every namespace of the sync ``Client`` round-trips against a real server."""

from __future__ import annotations

import gzip
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from backstate.client import (
    AdminState,
    AnonymousAuth,
    Client,
    Conflict,
    ExchangeAuth,
    KeyAuth,
    MissingOrg,
    MissingScope,
    NotFound,
    RejectedByMachineAuthorizer,
    State,
    Unauthorized,
)
from tests.auth.test_anonymous import client_token
from tests.server.test_e2e import Server

from .conftest import SAY_SOURCE


def test_machines_create_list_get_delete(client: Client, name: str) -> None:
    client.machines.create(name, indexes=["by-owner"])
    listed = {m.slug: m for m in client.machines.list().items}
    assert listed[name].current_version is None and listed[name].indexes == ("by-owner",)
    assert listed["say"].current_version is not None
    assert listed["say"].current_version.client_info == "say-1"
    got = client.machines.get(name)
    assert (got.slug, got.indexes, got.current_version) == (name, ("by-owner",), None)
    assert abs(got.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    client.machines.delete(name, danger_data_will_be_deleted_forever=True)
    with pytest.raises(NotFound):
        client.machines.get(name)


def test_a_machine_with_instances_is_not_deleted(client: Client, name: str) -> None:
    client.machines.create(name)
    client.machine_versions.create(name, SAY_SOURCE)
    client.instances.create(name, "only")
    with pytest.raises(Conflict) as refused:
        client.machines.delete(name, danger_data_will_be_deleted_forever=True)
    assert refused.value.code == "invalid-state"
    client.instances.delete(name, "only", danger_data_will_be_deleted_forever=True)
    client.machines.delete(name, danger_data_will_be_deleted_forever=True)
    with pytest.raises(ValueError, match="danger_data_will_be_deleted_forever"):
        client.machines.delete(name, danger_data_will_be_deleted_forever=False)  # type: ignore[arg-type]


def test_versions_one_step_and_provisional_uploads(client: Client, name: str) -> None:
    client.machines.create(name)
    first = client.machine_versions.create(name, SAY_SOURCE, client_info="1.0.0")
    assert first.startswith("ver_")
    assert client.machines.get(name).current_version.id == first  # type: ignore[union-attr]

    # State Backed's three steps, plain and gzipped; neither made current.
    versions = []
    for zipped in (False, True):
        upload = client.machine_versions.provisionally_create(name, gzip=zipped)
        assert upload.gzip is zipped and upload.code_upload_url.startswith(client.api_host)
        client.upload_code(upload, SAY_SOURCE)
        versions.append(
            client.machine_versions.finalize(
                name, upload.id, client_info=f"gzip={zipped}", make_current=False
            )
        )
    # Bytes already gzipped are sent as they are.
    upload = client.machine_versions.provisionally_create(name, gzip=True)
    client.upload_code(upload, gzip.compress(SAY_SOURCE.encode()))
    versions.append(client.machine_versions.finalize(name, upload.id, client_info="pre-zipped"))

    listed = client.machine_versions.list(name).items
    assert [v.client_info for v in listed] == ["1.0.0", "gzip=False", "gzip=True", "pre-zipped"]
    assert [v.id for v in listed] == [first, *versions]
    assert client.machines.get(name).current_version.id == versions[-1]  # type: ignore[union-attr]
    state = client.instances.create(name, "old", machine_version_id=versions[0])
    assert state.value == "listening"
    admin = client.instances.get_admin(name, "old")
    assert admin.machine_version is not None and admin.machine_version.id == versions[0]


def test_instances_round_trip(client: Client, name: str) -> None:
    created = client.instances.create("say", name, context={"secret": "mine"})
    assert created == State("listening", {"said": 0}, frozenset({"open"}), False, created.ts)
    assert created.matches("listening") and created.has_tag("open")
    assert client.instances.get("say", name) == created

    said = client.instances.send_event("say", name, {"type": "say", "text": "hello"})
    assert said.public_context == {"said": 1} and said.ts >= created.ts
    finished = client.instances.send_event("say", name, "finish")
    assert (finished.value, finished.done, finished.tags) == ("finished", True, frozenset())

    admin = client.instances.get_admin("say", name)
    assert isinstance(admin, AdminState)
    assert admin.context == {"public": {"said": 1}, "secret": "mine"}
    assert (admin.status, admin.done, admin.desired_machine_version) == ("running", True, None)

    transitions = client.instances.list_transitions("say", name)
    assert [
        t.event if isinstance(t.event, str) else t.event["type"] for t in transitions.items
    ] == [
        "xstate.init",
        "say",
        "finish",
    ]
    assert transitions.items[-1].state == "finished" and transitions.cursor is None

    listed = {i.slug: i for i in client.instances.list("say").items}
    assert listed[name].status == "running"
    assert listed[name].machine_version is not None
    assert listed[name].machine_version.client_info == "say-1"


def test_get_or_create(client: Client, name: str) -> None:
    calls: list[int] = []

    def context() -> dict[str, str]:
        calls.append(1)
        return {"secret": "lazy"}

    first = client.instances.get_or_create("say", name, context=context)
    again = client.instances.get_or_create("say", name, context=context)
    assert first == again and calls == [1]  # the context function runs only to create
    assert client.instances.get_admin("say", name).context["secret"] == "lazy"


def test_pause_resume_and_delete(client: Client, name: str) -> None:
    client.instances.create("say", name)
    client.instances.set_status("say", name, "paused")
    assert client.instances.get_admin("say", name).status == "paused"
    with pytest.raises(Conflict):
        client.instances.send_event("say", name, "say")
    client.instances.set_status("say", name, "running")
    assert client.instances.send_event("say", name, "say").public_context == {"said": 1}
    client.instances.delete("say", name, danger_data_will_be_deleted_forever=True)
    with pytest.raises(NotFound) as gone:
        client.instances.get("say", name)
    assert gone.value.code == "instance-not-found"


def test_logs_retrieve_and_watch(client: Client, name: str) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    client.instances.create("say", name)
    for text in ("one", "two", "three"):
        client.instances.send_event("say", name, {"type": "say", "text": text})
    # Custom actions (and so their prints) run after the transition commits.
    deadline = time.monotonic() + 10
    while len((logs := client.logs.retrieve(start, machine="say", instance=name)).entries) < 3:
        assert time.monotonic() < deadline, logs
        time.sleep(0.05)
    assert [e.log for e in logs.entries] == ["said one", "said two", "said three"]
    entry = logs.entries[0]
    assert (entry.machine_name, entry.instance_name, entry.output_type) == ("say", name, "stdout")
    assert entry.org_id == client.orgs.list().items[0].id
    # The next batch starts after the last entry's millisecond.
    assert logs.max_timestamp == logs.entries[-1].timestamp + timedelta(milliseconds=1)

    # The watch gives no entry twice, and ends after `to`.
    to = datetime.now(UTC) + timedelta(seconds=1)
    watched = [
        e.log
        for e in client.logs.watch(start, to=to, machine="say", instance=name, poll_interval_s=0.2)
    ]
    assert watched == ["said one", "said two", "said three"]
    assert datetime.now(UTC) >= to


def test_logs_watch_repeats_and_loses_nothing_across_pages(
    client: Client, server: Server, name: str
) -> None:
    # A page boundary inside a millisecond, and a millisecond holding more than a page.
    start, messages = server.write_logs(name, [99, 3, 250, 1])
    since = datetime.fromtimestamp(start / 1000, UTC)
    to = datetime.now(UTC) + timedelta(seconds=1)
    watched = [e.log for e in client.logs.watch(since, to=to, machine=name, poll_interval_s=0.2)]
    assert watched == messages


def test_orgs_and_keys(client: Client, server: Server, name: str) -> None:
    orgs = client.orgs.list().items
    assert [o.id for o in orgs] == [server.creds["orgId"]] and orgs[0].role == "admin"

    created = client.orgs.create(name, allow_anonymous_access=False)
    assert created.id.startswith("org_") and created.admin_key is not None
    with Client(server.url, auth=KeyAuth(created.admin_key.id, created.admin_key.key)) as other_org:
        assert [o.name for o in other_org.orgs.list().items] == [name]
        assert other_org.machines.list().items == []

    key = client.keys.create(name, use="production")
    assert key.key.startswith("sbsec_") and key.key not in repr(key)
    listed = {k.id: k for k in client.keys.list().items}
    assert listed[key.id].name == name and "instances.write" in listed[key.id].scopes
    with Client(server.url, auth=KeyAuth(key.id, key.key, {"sid": name})) as production:
        assert production.instances.create("toggler", name).value == "on"
        client.keys.delete(key.id)
        with pytest.raises(Unauthorized) as refused:
            production.instances.get("toggler", name)
    assert refused.value.code == "unknown-key"
    with pytest.raises(NotFound):
        client.keys.delete(key.id)


def test_identity_providers_token_providers_and_exchange(
    client: Client, server: Server, name: str
) -> None:
    secret = f"{name}-idp-secret-of-32-bytes-or-more"
    issuer = f"https://{name}.example/"
    client.identity_providers.upsert(
        iss=issuer, algs=["HS256"], key=secret.encode(), mapping={"sub.$": "$.sub"}
    )
    idps = [i for i in client.identity_providers.list().items if i.iss == issuer]
    assert [(i.algs, i.mapping, i.aud) for i in idps] == [(("HS256",), {"sub.$": "$.sub"}, None)]

    service = f"svc-{name}"
    client.token_providers.upsert(
        service, key_id=server.creds["keyId"], mapping={"sid.$": "$.sub", "via": "exchange"}
    )
    providers = {p.service: p for p in client.token_providers.list().items}
    assert providers[service].key_id == server.creds["keyId"]

    def idp_token() -> str:
        return jwt.encode(
            {"iss": issuer, "sub": name, "exp": int(time.time()) + 300}, secret, algorithm="HS256"
        )

    org = server.creds["orgId"]
    token = client.tokens.exchange(org, service, idp_token())
    with Client(server.url, auth=token) as by_token:
        assert by_token.instances.create("toggler", name).value == "on"
    with Client(server.url, auth=ExchangeAuth(idp_token, org, service)) as exchanging:
        assert exchanging.instances.send_event("toggler", name, "toggle").value == "off"

    client.token_providers.delete(service)
    client.identity_providers.delete(iss=issuer)
    assert not [i for i in client.identity_providers.list().items if i.iss == issuer]
    assert service not in {p.service for p in client.token_providers.list().items}
    with pytest.raises(NotFound):
        client.token_providers.delete(service)
    with (
        Client(server.url, auth=ExchangeAuth(idp_token(), org, service)) as refused,
        pytest.raises(Unauthorized) as failed,
    ):
        refused.instances.get("toggler", name)
    assert failed.value.status == 401 and failed.value.__cause__ is not None


def test_anonymous_sessions_as_statebacked_client_makes_them(server: Server, name: str) -> None:
    org = server.creds["orgId"]
    auth = AnonymousAuth(org, session_id=name)
    now = time.time()
    assert auth.subject_token(now) == client_token(org, name, iat=int(now))
    assert AnonymousAuth(org, session_id="s", device_id="d").subject_token(now) == client_token(
        org, "s", "d", iat=int(now)
    )
    with Client(server.url, auth=auth) as anonymous:
        assert anonymous.instances.create("toggler", name).value == "on"
        with pytest.raises(RejectedByMachineAuthorizer):
            anonymous.instances.create("toggler", name + "-other")
        with pytest.raises(MissingScope):
            anonymous.machines.list()  # the token provider signs with a production key


def test_act_as_and_org_header(client: Client, server: Server, name: str) -> None:
    with Client.from_credentials(server.creds_path, act_as={"sid": name}) as acting:
        assert acting.instances.create("toggler", name).value == "on"
    with Client.from_credentials(server.creds_path, org_id=server.creds["orgId"]) as right:
        assert right.orgs.list().items[0].id == server.creds["orgId"]
    with (
        Client.from_credentials(server.creds_path, org_id="org_someoneelse") as wrong,
        pytest.raises(MissingOrg),
    ):
        wrong.orgs.list()


def test_from_credentials_reads_backstate_home(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKSTATE_HOME", str(server.creds_path.parent))
    with Client.from_credentials(claims={"sid": "x"}) as client:
        assert client.api_host == server.url
        assert client.machines.get("toggler").slug == "toggler"
