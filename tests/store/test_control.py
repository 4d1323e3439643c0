"""The control plane's store, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from backstate.store import (
    ControlStore,
    IdpRow,
    KeyRow,
    MachineRow,
    OrgRow,
    SecretRow,
    StoreError,
    TokenProviderRow,
    VersionRow,
    open_control,
)

from .targets import Target


@pytest.fixture
def control(target: Target) -> Iterator[ControlStore]:
    opened = open_control(target.url)
    yield opened
    opened.close()


def key(id: str, org: str = "org_a", at: int = 1) -> KeyRow:
    return KeyRow(id, org, f"key {id}", ("admin", "read"), "s3cret", at)


def idp(aud: str | None, iss: str | None, at: int = 1) -> IdpRow:
    return IdpRow("org_a", aud, iss, ("HS256",), {"sub": "{{ sub }}"}, "a2V5", None, at)


def test_an_org_is_created_with_its_keys_idps_and_providers_atomically(
    control: ControlStore,
) -> None:
    provider = TokenProviderRow("org_a", "svc", "k1", {"sub": "x"}, 3)
    control.add_org(OrgRow("org_a", "A", 1), [key("k1")], [idp(None, "iss")], [provider])
    assert control.org("org_a") == OrgRow("org_a", "A", 1)
    assert control.key("k1") == key("k1")
    assert control.idps("org_a") == [idp(None, "iss")]
    assert control.token_provider("org_a", "svc") == provider
    with pytest.raises(StoreError):  # the org exists: its new key is not written either
        control.add_org(OrgRow("org_a", "again", 2), [key("k2")])
    assert control.key("k2") is None and control.org("org_a") == OrgRow("org_a", "A", 1)
    control.add_org(OrgRow("org_b", "B", 2))
    assert [o.id for o in control.orgs()] == ["org_a", "org_b"]
    assert control.org("nope") is None


def test_keys(control: ControlStore) -> None:
    control.add_org(OrgRow("org_a", "A", 1))
    control.add_key(key("k2", at=2))
    control.add_key(key("k1", at=1))
    control.add_key(key("k3", org="org_b"))
    assert [k.id for k in control.keys("org_a")] == ["k1", "k2"]
    assert control.delete_key("org_b", "k1") is False
    assert control.delete_key("org_a", "k1") is True
    assert control.delete_key("org_a", "k1") is False
    assert [k.id for k in control.keys("org_a")] == ["k2"]


def test_identity_and_token_providers_upsert_by_their_keys(control: ControlStore) -> None:
    control.upsert_idp(idp("aud", "iss", at=1))
    control.upsert_idp(idp(None, None, at=2))
    replaced = IdpRow("org_a", "aud", "iss", ("RS256",), {}, None, "https://x/jwks", 1)
    control.upsert_idp(replaced)
    assert control.idps("org_a") == [replaced, idp(None, None, at=2)]
    assert control.delete_idp("org_a", None, None) is True
    assert control.delete_idp("org_a", None, None) is False
    control.upsert_token_provider(TokenProviderRow("org_a", "b", "k1", {}, 1))
    control.upsert_token_provider(TokenProviderRow("org_a", "a", "k1", {}, 1))
    control.upsert_token_provider(TokenProviderRow("org_a", "b", "k2", {"m": 1}, 1))
    assert control.token_providers("org_a") == [
        TokenProviderRow("org_a", "a", "k1", {}, 1),
        TokenProviderRow("org_a", "b", "k2", {"m": 1}, 1),
    ]
    assert control.delete_token_provider("org_a", "a") is True
    assert control.token_provider("org_a", "a") is None


def test_machines_and_versions(control: ControlStore) -> None:
    for slug in ("b", "B", "a"):
        assert control.add_machine(MachineRow("org_a", slug, ("ix",), 1, None)) is True
    assert control.add_machine(MachineRow("org_a", "a", (), 2, None)) is False
    assert [m.slug for m in control.machines("org_a")] == ["B", "a", "b"]
    v1 = VersionRow("ver_1", "org_a", "a", "info", "source 1", {"ix": "$.x"}, 10)
    v2 = VersionRow("ver_2", "org_a", "a", None, "source 2", {}, 20)
    control.add_version(v1, make_current=True)
    control.add_version(v2, make_current=False)
    machine = control.machine("org_a", "a")
    assert machine == MachineRow("org_a", "a", ("ix",), 1, "ver_1")
    assert control.versions("org_a", "a") == [v1, v2]
    assert control.versions() == [v1, v2]
    control.delete_machine("org_a", "a")
    assert control.machine("org_a", "a") is None and control.versions() == []
    assert len(control.machines()) == 2


def test_reopening_keeps_everything_and_refuses_a_newer_schema(
    control: ControlStore, target: Target
) -> None:
    control.add_org(OrgRow("org_a", "A", 1))
    control.close()
    reopened = open_control(target.url)
    assert reopened.orgs() == [OrgRow("org_a", "A", 1)]
    reopened.close()
    [(current,)] = target.rows("SELECT version FROM control_schema_version")
    target.rows("UPDATE control_schema_version SET version = 99")
    with pytest.raises(StoreError, match="99"):
        open_control(target.url)
    target.rows("UPDATE control_schema_version SET version = ?", current)
    open_control(target.url).close()


def test_the_first_org_is_created_once_even_by_two_nodes_at_once(target: Target) -> None:
    import threading

    stores = [open_control(target.url) for _ in range(2)]
    outcomes: list[str] = []

    def start(i: int) -> None:
        try:
            stores[i].add_org(
                OrgRow(f"org_{i}", "default", 1), keys=[key(f"k{i}", f"org_{i}")], first=True
            )
            outcomes.append("created")
        except StoreError:
            outcomes.append("refused")

    threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["created", "refused"]
    orgs = stores[0].orgs()
    assert len(orgs) == 1
    # The refused one wrote nothing: no org, no key.
    loser = "org_1" if orgs[0].id == "org_0" else "org_0"
    assert stores[0].keys(loser) == []
    # Later orgs (not the first start's) are created as usual.
    stores[0].add_org(OrgRow("org_later", "later", 2))
    assert len(stores[1].orgs()) == 2
    for store in stores:
        store.close()


def test_deployments_at_start_up_are_one_process_at_a_time(target: Target) -> None:
    """``deploying()`` on PostgreSQL is an advisory lock held by another process's
    control store: the second holder gets in only after the first has left. One process
    serves a SQLite file, so there it never waits."""
    if target.kind != "postgresql":
        one, other = open_control(target.url), open_control(target.url)
        with one.deploying(), other.deploying():
            pass
        one.close()
        other.close()
        return
    first, second = open_control(target.url), open_control(target.url)
    order: list[str] = []
    try:
        with first.deploying():
            waiter = threading.Thread(target=lambda: _deploy(second, order), daemon=True)
            waiter.start()
            time.sleep(0.5)
            order.append("first leaves")
        waiter.join(10)
        assert order == ["first leaves", "second in"]
        with first.deploying():  # released by the second too
            order.append("first again")
        assert order[-1] == "first again"
    finally:
        first.close()
        second.close()


def _deploy(control: ControlStore, order: list[str]) -> None:
    with control.deploying():
        order.append("second in")


def test_secrets_are_kept_sealed_per_org(control: ControlStore) -> None:
    control.put_secret(SecretRow("o1", "B", "sealed-b", 1))
    control.put_secret(SecretRow("o1", "A", "sealed-a", 2))
    control.put_secret(SecretRow("o2", "A", "other", 3))
    control.put_secret(SecretRow("o1", "A", "sealed-a2", 4))  # replaces
    assert control.secrets("o1") == [
        SecretRow("o1", "A", "sealed-a2", 4),
        SecretRow("o1", "B", "sealed-b", 1),
    ]
    assert control.delete_secret("o1", "A") and not control.delete_secret("o1", "A")
    assert [r.name for r in control.secrets("o1")] == ["B"]
    assert control.secrets("o2") == [SecretRow("o2", "A", "other", 3)]
