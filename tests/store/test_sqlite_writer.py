"""SQLite's writer process (store/_sqlite_writer): the runtime's commits, made outside
the server's interpreter; it fails a commit cleanly when it dies, is replaced, and never
outlives its store or its server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from backstate.store import InstanceRow, SequenceConflict, SQLiteStore, StoreError, WriteBatch
from backstate.store._records import HistoryRow, InboxRow


def instance(name: str, seq: int = 0) -> InstanceRow:
    return InstanceRow("m", name, "v1", seq, {"value": "a", "context": {}}, "running", None, 1, 1)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def _commit(store: SQLiteStore, batch: WriteBatch) -> None:
    await store.commit_async(batch)


def _writer_pid(store: SQLiteStore) -> int:
    process = store._writer._process
    assert process is not None
    return process.pid


def test_commits_are_made_by_another_process_and_read_back_here(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")

    async def body() -> None:
        await store.commit_async(WriteBatch(instance_creates=[instance("a")]))
        pid = _writer_pid(store)
        assert pid != os.getpid() and _alive(pid)
        update = instance("a", seq=1)
        await store.commit_async(
            WriteBatch(
                instance_updates=[(("m", "a"), 0, update)],
                history=[(("m", "a"), HistoryRow(1, {"type": "go"}, update.snapshot, 2))],
            )
        )
        assert _writer_pid(store) == pid  # one writer for many commits
        row = store.load_instance(("m", "a"))
        assert row is not None and row.seq == 1
        assert [h.seq for h in store.history(("m", "a"), 0, 10)] == [1]

    asyncio.run(body())
    store.close()


def _messages(n: int, size: int = 10) -> WriteBatch:
    return WriteBatch(
        inbox_inserts=[
            InboxRow(0, "m", "a", {"type": "x", "pad": "p" * size}, "s", 0, 0, 0) for _ in range(n)
        ]
    )


def test_plans_sent_together_are_answered_in_order_past_a_cancelled_one(tmp_path: Path) -> None:
    """Each commit gets its own answer (its inbox rowids), a cancelled one's is skipped,
    and a plan larger than the socket takes at once goes out whole."""
    store = SQLiteStore(tmp_path / "s.db")

    async def body() -> None:
        first = store.commit_async(_messages(1))
        cancelled = store.commit_async(_messages(2))
        large = store.commit_async(_messages(3, size=1 << 20))  # 3 MB: many sends
        last = store.commit_async(_messages(1))
        cancelled.cancel()
        assert (await first).inbox_ids == [1]
        assert (await large).inbox_ids == [4, 5, 6]
        assert (await last).inbox_ids == [7]

    asyncio.run(body())
    assert len(store.pending_inbox()) == 7  # the cancelled commit was made all the same
    store.close()


def test_a_sequence_conflict_is_refused_whole_by_the_writer(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")

    async def body() -> None:
        await store.commit_async(WriteBatch(instance_creates=[instance("a"), instance("b")]))
        stale = WriteBatch(
            instance_updates=[
                (("m", "a"), 0, instance("a", seq=1)),
                (("m", "b"), 5, instance("b", seq=6)),  # b is at 0, not 5
            ]
        )
        with pytest.raises(SequenceConflict, match="m/b is no longer at sequence 5"):
            await store.commit_async(stale)

    asyncio.run(body())
    a = store.load_instance(("m", "a"))
    assert a is not None and a.seq == 0  # a's update went with the refused commit
    store.close()


def test_a_killed_writer_fails_the_next_commit_cleanly_and_is_replaced(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")

    async def body() -> None:
        await store.commit_async(WriteBatch(instance_creates=[instance("a")]))
        first = _writer_pid(store)
        os.kill(first, signal.SIGKILL)
        assert _gone_within(first, 5)
        with pytest.raises(StoreError, match="writer process exited"):
            await store.commit_async(WriteBatch(instance_creates=[instance("b")]))
        assert store.load_instance(("m", "b")) is None
        await store.commit_async(WriteBatch(instance_creates=[instance("c")]))
        assert _writer_pid(store) != first
        assert store.load_instance(("m", "c")) is not None

    asyncio.run(body())
    store.close()


def test_the_writer_serves_one_event_loop_after_another_and_ends_with_its_store(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    pids = []
    for name in ("a", "b"):  # two event loops, one after the other, as two test runs
        asyncio.run(_commit(store, WriteBatch(instance_creates=[instance(name)])))
        pids.append(_writer_pid(store))
    assert pids[0] == pids[1]
    assert [r.name for r in store.list_instances("m", None, 10)] == ["a", "b"]
    store.close()
    assert not _alive(pids[0])


def test_the_writer_does_not_outlive_a_server_killed_with_sigkill(tmp_path: Path) -> None:
    program = textwrap.dedent(
        f"""
        import asyncio, sys, time
        from backstate.store import SQLiteStore, WriteBatch, InstanceRow
        store = SQLiteStore({str(tmp_path / "s.db")!r})
        row = InstanceRow("m", "a", "v1", 0, {{}}, "running", None, 1, 1)
        async def commit():
            await store.commit_async(WriteBatch(instance_creates=[row]))
        asyncio.run(commit())
        print(store._writer._process.pid, flush=True)
        time.sleep(60)
        """
    )
    server = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    pid = int(server.stdout.readline())
    assert _alive(pid)
    server.kill()
    server.wait()
    server.stdout.close()
    assert _gone_within(pid, 5), "the writer outlived its server"
