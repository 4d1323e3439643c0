"""Desired versions, migrations (both uploads) and index queries, as State Backed's API
has them, plus backstate's extensions: upgrading at once, the dry run, number indexes."""

from __future__ import annotations

import pytest

from backstate.client import Client, NoMigrationPath

from .conftest import SAY_SOURCE

# The say machine with its "listening" state renamed to "ready".
RENAMED = SAY_SOURCE.replace('"initial": "listening"', '"initial": "ready"').replace(
    '"listening": {', '"ready": {'
)
MIGRATION = """
def upgrade_state(old_state_path, context):
    return ["ready" if name == "listening" else name for name in old_state_path]


def upgrade_context(old_state_paths, new_state_paths, context):
    return {**context, "migrated": True}
"""


def two_versions(client: Client, machine: str) -> tuple[str, str]:
    client.machines.create(machine)
    old = client.machine_versions.create(machine, SAY_SOURCE, client_info="old")
    new = client.machine_versions.create(machine, RENAMED, client_info="new", make_current=False)
    return old, new


def test_desired_version_needs_a_migration_path(client: Client, name: str) -> None:
    _, new = two_versions(client, name)
    client.instances.create(name, "i")
    with pytest.raises(NoMigrationPath) as refused:
        client.instances.set_desired_version(name, "i", new)
    assert (refused.value.status, refused.value.code) == (400, "no-migration-path")


def test_migration_upgrades_at_the_next_event(client: Client, name: str) -> None:
    old, new = two_versions(client, name)
    client.instances.create(name, "i")
    migration = client.migrations.create(name, old, new, MIGRATION)
    assert migration
    client.instances.set_desired_version(name, "i", new)
    admin = client.instances.get_admin(name, "i")
    assert admin.desired_machine_version is not None and admin.desired_machine_version.id == new
    state = client.instances.send_event(name, "i", {"type": "say", "text": "after"})
    assert (state.value, state.public_context) == ("ready", {"said": 1})
    upgraded = client.instances.get_admin(name, "i")
    assert upgraded.machine_version is not None and upgraded.machine_version.id == new
    assert upgraded.context["migrated"] is True
    events = [t.event for t in client.instances.list_transitions(name, "i").items]
    upgrade = events[1]
    assert isinstance(upgrade, dict) and upgrade["type"] == "statebacked.upgrade"
    assert (upgrade["fromMachineVersionId"], upgrade["toMachineVersionId"]) == (old, new)


def test_provisional_migration_upload(client: Client, name: str) -> None:
    old, new = two_versions(client, name)
    upload = client.migrations.provisionally_create(name, old, new, gzip=True)
    client.upload_code(upload, MIGRATION)
    assert client.migrations.finalize(name, upload.id)
    client.instances.create(name, "i")
    client.instances.set_desired_version(name, "i", new)


def test_index_query(client: Client, name: str) -> None:
    client.machines.create(name, indexes=["owner"])
    client.machine_versions.create(name, SAY_SOURCE, index_selectors={"owner": "$.owner"})
    for instance, owner in (("a", "ann"), ("b", "bob"), ("c", "cat")):
        client.instances.create(name, instance, context={"owner": owner})

    def slugs(**query: object) -> list[str]:
        page = client.instances.query(name, "owner", **query)  # type: ignore[arg-type]
        return [entry.slug for entry in page.items]

    assert slugs() == ["a", "b", "c"]
    assert slugs(op="eq", value="bob") == ["b"]
    assert slugs(op="gt", value="ann", direction="desc") == ["c", "b"]
    first = client.instances.query(name, "owner", limit=2)
    assert [(e.slug, e.index_value) for e in first.items] == [("a", "ann"), ("b", "bob")]
    assert first.cursor is not None
    rest = client.instances.query(name, "owner", limit=2, cursor=first.cursor)
    assert [e.slug for e in rest.items] == ["c"]


def test_upgrade_now_and_dry_run(client: Client, name: str) -> None:
    old, new = two_versions(client, name)
    client.instances.create(name, "i")
    client.instances.send_event(name, "i", {"type": "say", "text": "before"})
    migration = client.migrations.create(name, old, new, MIGRATION)
    report = client.instances.dry_run_upgrade(name, "i", new)
    assert (report.from_version_id, report.to_version_id) == (old, new)
    assert report.migration_path == (migration,)
    assert report.replayed >= 1 and report.diverged_at is None
    assert client.instances.get_admin(name, "i").machine_version.id == old  # type: ignore[union-attr]

    client.instances.set_desired_version(name, "i", new, upgrade_now=True)
    admin = client.instances.get_admin(name, "i")
    assert admin.machine_version is not None and admin.machine_version.id == new
    assert (admin.value, admin.context["migrated"]) == ("ready", True)


def test_number_index(client: Client, name: str) -> None:
    client.machines.create(name, indexes=["said"])
    client.machine_versions.create(name, SAY_SOURCE, index_selectors={"said": "$.public.said"})
    for instance, times in (("a", 0), ("b", 2), ("c", 3)):
        client.instances.create(name, instance)
        for _ in range(times):
            client.instances.send_event(name, instance, "say")
    page = client.instances.query(name, "said", op="gte", value=2)
    assert [(e.slug, e.index_value) for e in page.items] == [("b", 2), ("c", 3)]
    assert [e.slug for e in client.instances.query(name, "said", op="lt", value=2.5).items] == [
        "a",
        "b",
    ]
    with pytest.raises(ValueError, match="together"):
        client.instances.query(name, "said", op="eq")
