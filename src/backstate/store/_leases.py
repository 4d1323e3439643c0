"""Shard leases on PostgreSQL: which node owns which instances, for many nodes.

Instances hash into ``SHARDS`` shards (see ``backstate.runtime._cluster``). Each shard
has one row in ``shard_leases``; a node holds a shard while its row names the node and
``expires_at`` (the database's clock, never a node's) is in the future. Nodes renew
their leases with every heartbeat and claim expired ones with ``FOR UPDATE SKIP
LOCKED``. A commit of a node share-locks the leases of the shards it writes and checks
they are still its own (``WriteBatch.fence``): a claim of such a shard waits until that
commit is done, so the new owner's recovery reads everything the old owner committed,
and an old owner whose lease expired can commit nothing more.

Notifications (``LISTEN``) arrive on a connection of their own, read in a thread.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from ._postgres import Attempt, PostgresStore
from ._protocol import ADOPT_CHANNEL, INBOX_CHANNEL, STATE_CHANNEL
from ._records import InboxRow, InstanceKey, TimerRow

logger = logging.getLogger("backstate.store")


class Leases:
    """The lease and node tables, through a ``PostgresStore``'s pool."""

    def __init__(self, store: PostgresStore, node: str, url: str, ttl: float) -> None:
        self.store = store
        self.node = node
        self.url = url
        self.ttl = ttl

    def heartbeat(self) -> tuple[set[int], int]:
        """Mark this node live and renew its unexpired leases: (shards held, live nodes)."""

        def run(conn: psycopg.Connection[Any], attempt: Attempt) -> tuple[set[int], int]:
            with conn.transaction():
                conn.execute(
                    "INSERT INTO nodes VALUES (%s, %s, now()) ON CONFLICT (id) DO UPDATE"
                    " SET url = excluded.url, heartbeat_at = excluded.heartbeat_at",
                    (self.node, self.url),
                )
                held = conn.execute(
                    "UPDATE shard_leases SET expires_at = now() + make_interval(secs => %s)"
                    " WHERE node = %s AND expires_at > now() RETURNING shard",
                    (self.ttl, self.node),
                ).fetchall()
                live = conn.execute(
                    "SELECT count(*) FROM nodes"
                    " WHERE heartbeat_at > now() - make_interval(secs => %s)",
                    (self.ttl,),
                ).fetchone()
                attempt.committing = True
            return {r[0] for r in held}, int(live[0]) if live else 1

        return self.store.db.run(run)

    def claim(self, count: int) -> set[int]:
        """Up to ``count`` shards whose leases expired (or were released)."""
        rows = self.store.db.query(
            "UPDATE shard_leases SET node = ?, expires_at = now() + make_interval(secs => ?),"
            " epoch = epoch + 1 WHERE shard IN (SELECT shard FROM shard_leases"
            " WHERE expires_at < now() ORDER BY random() LIMIT ? FOR UPDATE SKIP LOCKED)"
            " RETURNING shard",
            (self.node, self.ttl, count),
        )
        return {r[0] for r in rows}

    def release(self, shards: set[int]) -> None:
        self.store.db.query(
            "UPDATE shard_leases SET node = NULL, expires_at = '-infinity'"
            " WHERE node = ? AND shard = ANY(?) RETURNING shard",
            (self.node, sorted(shards)),
        )

    def leave(self) -> None:
        self.store.db.query(
            "UPDATE shard_leases SET node = NULL, expires_at = '-infinity'"
            " WHERE node = ? RETURNING shard",
            (self.node,),
        )
        self.store.db.query("DELETE FROM nodes WHERE id = ? RETURNING id", (self.node,))

    def owners(self) -> dict[int, tuple[str, str]]:
        """Shard -> (node, url) of every unexpired lease."""
        rows = self.store.db.query(
            "SELECT l.shard, l.node, n.url FROM shard_leases l JOIN nodes n ON n.id = l.node"
            " WHERE l.expires_at > now()"
        )
        return {r[0]: (r[1], r[2]) for r in rows}

    def inbox_of(self, keys: list[InstanceKey]) -> list[InboxRow]:
        """Pending inbox rows of these instances, in delivery order."""
        rows = self.store.db.query(
            "SELECT i.id, i.machine, i.instance, i.event, i.sender, i.priority, i.attempts,"
            " i.not_before FROM inbox i JOIN unnest(?::text[], ?::text[]) AS k(m, n)"
            " ON i.machine = k.m AND i.instance = k.n ORDER BY i.priority, i.id",
            ([k[0] for k in keys], [k[1] for k in keys]),
        )
        return [InboxRow(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6], r[7]) for r in rows]

    def timers_of(self, key: InstanceKey) -> list[TimerRow]:
        rows = self.store.db.query(
            "SELECT machine, instance, key, event, due, target, attempts FROM timers"
            " WHERE machine = ? AND instance = ? ORDER BY due, key",
            key,
        )
        return [TimerRow(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6]) for r in rows]


class Listener:
    """``LISTEN`` on the channels in a thread; ``deliver(channel, lines)`` per
    notification (from that thread: one hand-over to the event loop for all the lines of
    a commit) and ``reconnected()`` after a lost connection is back (notifications sent
    meanwhile are lost: the caller sweeps)."""

    def __init__(
        self,
        conninfo: str,
        deliver: Callable[[str, list[str]], object],
        reconnected: Callable[[], object],
    ) -> None:
        self.conninfo = conninfo
        self.deliver = deliver
        self.reconnected = reconnected
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backstate-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    for channel in (INBOX_CHANNEL, STATE_CHANNEL, ADOPT_CHANNEL):
                        conn.execute(f"LISTEN {channel}")
                    if not first:
                        self.reconnected()
                    first = False
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self.deliver(note.channel, note.payload.split("\n"))
            except psycopg.Error as exc:
                first = False
                logger.warning("LISTEN connection lost (%s); reconnecting", exc)
                self._stop.wait(0.5)
