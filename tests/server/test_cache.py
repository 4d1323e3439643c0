"""The control store's read-through cache: a store that hangs or fails never makes the
event loop wait (the rows it holds are served while a thread reads them again), and a
row never read fails at once while the store is known to be down."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from backstate.server import _backend
from backstate.server._backend import Backend
from backstate.server._cache import ReadThrough, StoreHealth
from backstate.store import StoreError
from tests.store import postgres


class Store:
    """What the cache reads: a dict whose reads can be held or made to fail, noting the
    thread each read ran on."""

    def __init__(self, rows: dict[str, str]) -> None:
        self.rows = rows
        self.failing = False
        self.gate = threading.Event()
        self.gate.set()
        self.threads: list[str] = []

    def read(self, key: str) -> str | None:
        self.threads.append(threading.current_thread().name)
        self.gate.wait(30)
        if self.failing:
            raise StoreError("down")
        return self.rows.get(key)


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(1, thread_name_prefix="reader") as pool:
        yield pool


def cache(store: Store, executor: ThreadPoolExecutor, **kw: Any) -> ReadThrough[str, str | None]:
    return ReadThrough(store.read, kw.pop("ttl", 0.0), executor, StoreHealth(), **kw)


async def settle(c: ReadThrough[Any, Any]) -> None:
    while c._reading:
        await asyncio.sleep(0.01)


def test_a_fresh_row_is_not_read_again(executor: ThreadPoolExecutor) -> None:
    store = Store({"k": "v1"})
    c = cache(store, executor, ttl=60.0)
    assert c.get("k") == "v1"
    store.rows["k"] = "v2"
    assert c.get("k") == "v1"
    assert len(store.threads) == 1
    c.clear()
    assert c.get("k") == "v2"


def test_on_the_loop_an_old_row_is_served_while_one_thread_reads_it_again(
    executor: ThreadPoolExecutor,
) -> None:
    store = Store({"k": "v1"})
    c = cache(store, executor)

    async def main() -> None:
        assert c.get("k") == "v1"  # never read: read in place
        store.rows["k"] = "v2"
        store.gate.clear()  # the store hangs
        assert [c.get("k") for _ in range(50)] == ["v1"] * 50  # at once, from the cache
        assert store.threads[1:] == ["reader_0"]  # one read behind, on the reader thread
        store.gate.set()
        await settle(c)
        c.ttl = 60.0
        assert c.get("k") == "v2"  # what the read behind found (already old, with ttl 0)
        await settle(c)
        assert c.get("k") == "v2" and len(store.threads) == 3

    asyncio.run(main())
    assert store.threads[0] == "MainThread"


def test_a_read_begun_before_clear_is_not_kept(executor: ThreadPoolExecutor) -> None:
    store = Store({"k": "old"})
    c = cache(store, executor)

    async def main() -> None:
        c.get("k")
        store.gate.clear()
        c.get("k")  # a read behind, held by the store
        c.clear()  # a change made here: what that read returns may predate it
        store.gate.set()
        await settle(c)
        store.rows["k"] = "new"
        assert c.get("k") == "new"

    asyncio.run(main())


def test_while_the_store_is_down_held_rows_serve_and_new_ones_fail_at_once(
    executor: ThreadPoolExecutor,
) -> None:
    store = Store({"a": "A", "b": "B"})
    c = cache(store, executor, stale_limit=60.0)

    async def main() -> None:
        assert c.get("a") == "A"
        store.failing = True
        assert c.get("a") == "A"  # served; the read behind fails and marks the store down
        await settle(c)
        reads = len(store.threads)
        with pytest.raises(StoreError):
            c.get("b")  # never read: refused without waiting for the store on the loop
        await settle(c)
        assert store.threads[reads:] == ["reader_0"]  # it is tried again behind
        assert c.get("a") == "A"
        await settle(c)
        store.failing = False
        c.get("a")  # this read behind succeeds: the store is up again
        await settle(c)
        assert c.get("b") == "B"

    asyncio.run(main())


def test_a_row_past_its_stale_limit_is_read_in_place(executor: ThreadPoolExecutor) -> None:
    store = Store({"k": "v1"})
    c = cache(store, executor, stale_limit=0.0)

    async def main() -> None:
        c.get("k")
        store.failing = True
        with pytest.raises(StoreError):
            c.get("k")

    asyncio.run(main())
    assert store.threads == ["MainThread", "MainThread"]


def test_off_the_loop_rows_are_read_in_place(executor: ThreadPoolExecutor) -> None:
    store = Store({"k": "v1"})
    c = cache(store, executor)
    c.get("k")
    store.rows["k"] = "v2"
    done: list[Any] = []
    t = threading.Thread(target=lambda: done.append(c.get("k")), name="caller")
    t.start()
    t.join(10)
    assert done == ["v2"] and store.threads == ["MainThread", "caller"]


# -- on PostgreSQL: a locked table holds every read of it --------------------------------


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with postgres.throwaway_database() as url:
        yield url


@pytest.fixture
def on_loop() -> Iterator[Callable[[Callable[[], Any]], Any]]:
    """``on_loop(fn)``: ``fn()`` (awaited if it is a coroutine) called on an event loop
    that runs in a thread, as the server's does; fails if it has not returned within 10 s
    (it waited for the store)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def call(fn: Callable[[], Any]) -> Any:
        out = fn()
        return await out if asyncio.iscoroutine(out) else out

    def run(fn: Callable[[], Any]) -> Any:
        try:
            return asyncio.run_coroutine_threadsafe(call(fn), loop).result(10)
        except TimeoutError:
            pytest.fail("no answer within 10 s: it waited for the store")

    yield run
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_a_locked_control_table_never_holds_the_event_loop(
    database: str, on_loop: Callable[[Callable[[], Any]], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_backend, "CONTROL_CACHE_SECONDS", 0.0)
    url = postgres.fresh_schema(database)
    backend = Backend(url)
    try:
        on_loop(backend.start)
        credentials = backend.ensure_admin()
        assert credentials is not None
        org = credentials.org_id
        backend.create_machine(org, "m", [])
        assert on_loop(lambda: backend.machine(org, "m")).slug == "m"
        assert on_loop(lambda: backend.lookup_key(credentials.key_id)) is not None
        with psycopg.connect(url) as locker:
            locker.execute("LOCK TABLE machines, keys IN ACCESS EXCLUSIVE MODE")
            # Every read of those tables now waits for the lock: the held rows answer.
            assert on_loop(lambda: backend.machine(org, "m")).slug == "m"
            assert on_loop(lambda: backend.lookup_key(credentials.key_id)) is not None
            locker.rollback()
    finally:
        on_loop(backend.close)
