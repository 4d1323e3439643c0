"""What only the PostgreSQL store has: several nodes migrating at once, and connections
that die (terminated backends, a database that refuses connections for a while)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from backstate.store import (
    HistoryRow,
    InstanceRow,
    PostgresStore,
    StoreError,
    WriteBatch,
    open_control,
)
from backstate.store._postgres import MIGRATIONS

from . import postgres


def instance(name: str, seq: int = 0) -> InstanceRow:
    return InstanceRow("m", name, "v1", seq, {"value": "a", "context": {}}, "running", None, 1, 1)


def transition(name: str, seq: int) -> WriteBatch:
    key = ("m", name)
    return WriteBatch(
        instance_updates=[(key, seq - 1, instance(name, seq))],
        history=[(key, HistoryRow(seq, {"type": "x"}, {}, seq))],
    )


@pytest.fixture
def url(postgres_database: str) -> str:
    return postgres.fresh_schema(postgres_database)


@pytest.fixture
def store(url: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(url, min_size=2, timeout=1.0)
    yield opened
    opened.close()


def test_nodes_starting_together_migrate_once(url: str) -> None:
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def open_node() -> None:
        start.wait()
        try:
            stores.append(PostgresStore(url))
            open_control(url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_node) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [s.schema_version for s in stores] == [len(MIGRATIONS)] * 6
    assert postgres.rows(url, "SELECT count(*) FROM schema_version") == [(1,)]
    for s in stores:
        s.close()


def test_an_unreachable_server_is_a_store_error_not_a_hang() -> None:
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot connect"):
        PostgresStore("postgresql://postgres@127.0.0.1:1/nothing", timeout=1.0)
    assert time.monotonic() - started < 10


def test_terminated_connections_are_replaced_and_nothing_is_lost(
    store: PostgresStore, url: str
) -> None:
    store.commit(WriteBatch(instance_creates=[instance("a")]))
    for seq in range(1, 6):
        assert postgres.terminate_backstate_connections(url) >= 1
        # Each time, the next operation reconnects (or fails cleanly): never a hang.
        store.commit(transition("a", seq))
        loaded = store.load_instance(("m", "a"))
        assert loaded is not None and loaded.seq == seq
    assert [h.seq for h in store.history(("m", "a"), -1, 10)] == [1, 2, 3, 4, 5]


def test_a_commit_whose_connection_dies_mid_flight_fails_cleanly(
    store: PostgresStore, url: str
) -> None:
    store.commit(WriteBatch(instance_creates=[instance("a")]))
    # Another session holds the instance row: the commit blocks on it, then loses its
    # connection while waiting.
    with psycopg.connect(url) as blocker:
        blocker.execute("SELECT 1 FROM instances WHERE name = 'a' FOR UPDATE")
        outcome: list[BaseException | None] = []

        def commit() -> None:
            try:
                store.commit(transition("a", 1))
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=commit)
        thread.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            waiting = postgres.rows(
                url,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'backstate'"
                " AND wait_event_type = 'Lock'",
            )
            if waiting == [(1,)]:
                break
            time.sleep(0.02)
        postgres.terminate_backstate_connections(url)
        blocker.rollback()  # a retry would wait for the row like the first try
        thread.join(10)
        assert not thread.is_alive()
    [error] = outcome
    # A retry after the lost connection may have committed; otherwise it failed whole.
    loaded = store.load_instance(("m", "a"))
    history = store.history(("m", "a"), -1, 10)
    assert loaded is not None
    if error is None:
        assert loaded.seq == 1 and [h.seq for h in history] == [1]
    else:
        assert isinstance(error, StoreError) and error.code == "store-unavailable"
        assert loaded.seq == 0 and history == []


def test_an_outage_fails_fast_and_the_pool_recovers(store: PostgresStore, url: str) -> None:
    store.commit(WriteBatch(instance_creates=[instance("a")]))
    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    admin_url = postgres.ADMIN_URL
    database = sql.Identifier(str(dbname))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(database))
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND application_name = 'backstate'",
                (dbname,),
            )
            for operation in (
                lambda: store.load_instance(("m", "a")),
                lambda: store.commit(transition("a", 1)),
            ):
                started = time.monotonic()
                with pytest.raises(StoreError) as info:
                    operation()
                assert info.value.code == "store-unavailable"
                assert time.monotonic() - started < 5  # the pool timeout is 1 s
        finally:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(database))
    deadline = time.monotonic() + 10
    while True:
        try:
            store.commit(transition("a", 1))
            break
        except StoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    loaded = store.load_instance(("m", "a"))
    assert loaded is not None and loaded.seq == 1
