"""The /rt protocol without the socket: subscriptions, their messages, and what to do
with each message from the server.

One socket serves every subscription of a client (as in State Backed's client). Each
subscription has a request id, unique on the socket and kept across reconnects. On
every (re)connect all subscriptions are sent again, and the server answers each with
the instance's current state: a subscriber gets the latest state after a reconnect,
including transitions made while it was disconnected. Updates older than the last one
a subscriber got are dropped, so its state never goes back in time.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ._errors import ApiError, error_for
from ._models import Progress, State

# A state; progress (to subscriptions that asked for it); the error that ended the
# subscription; or None: the client closed it.
Delivery = Callable[[State | Progress | ApiError | None], None]


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: exponential with "equal jitter", each delay uniformly random
    between half and all of ``initial_s * multiplier ** attempt`` (at most ``maximum_s``),
    so that clients cut off together do not all come back at once."""

    initial_s: float = 0.5
    maximum_s: float = 30.0
    multiplier: float = 2.0

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        cap = min(self.maximum_s, self.initial_s * self.multiplier ** min(attempt, 64))
        return cap * (0.5 + rand() / 2)


class Watch:
    """One subscription on the shared socket."""

    def __init__(
        self, request_id: str, machine: str, instance: str, deliver: Delivery, progress: bool
    ) -> None:
        self.request_id = request_id
        self.machine = machine
        self.instance = instance
        self.progress = progress
        self.latest: State | None = None
        self.connected = False
        self.error: ApiError | None = None
        self.subscribed = True  # the server's answer to a (re)subscribe is still due
        self._deliver = deliver

    def offer(self, state: State) -> None:
        """Deliver a state unless it is older than the latest, or (except as the answer
        to this watch's own subscribe) the same one again: the server re-sends an
        instance's state to every watch on the socket when another one subscribes."""
        if self.latest is not None and state.ts < self.latest.ts:
            return
        if not self.subscribed and state == self.latest:
            return
        self.subscribed = False
        self.latest = state
        self._deliver(state)

    def offer_progress(self, progress: Progress) -> None:
        if self.progress:
            self._deliver(progress)

    def end(self) -> None:
        self.connected = False
        self._deliver(None)

    def fail(self, error: ApiError) -> None:
        self.error = error
        self.connected = False
        self._deliver(error)

    def message(self, kind: str) -> dict[str, Any]:
        return {
            "type": kind,
            "requestId": self.request_id,
            "machineName": self.machine,
            "machineInstanceName": self.instance,
        }


PING: dict[str, Any] = {"type": "ping"}


class Subscriptions:
    """The subscriptions of one socket and the protocol messages they make."""

    def __init__(self) -> None:
        self._watches: dict[str, Watch] = {}
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._watches)

    def __iter__(self) -> Iterator[Watch]:
        return iter(list(self._watches.values()))

    def add(self, machine: str, instance: str, deliver: Delivery, progress: bool = False) -> Watch:
        watch = Watch(str(next(self._ids)), machine, instance, deliver, progress)
        self._watches[watch.request_id] = watch
        return watch

    def remove(self, watch: Watch) -> dict[str, Any] | None:
        """The unsubscribe message, if the watch was still subscribed."""
        if self._watches.pop(watch.request_id, None) is None:
            return None
        watch.connected = False
        return watch.message("unsubscribe-from-instance")

    def connected(self) -> list[dict[str, Any]]:
        """A socket opened: the subscribe message of every subscription."""
        for watch in self._watches.values():
            watch.connected = True
            watch.subscribed = True
        return [w.message("subscribe-to-instance") for w in self._watches.values()]

    def disconnected(self) -> None:
        for watch in self._watches.values():
            watch.connected = False

    def end_all(self) -> None:
        """The client is closing: every subscription ends."""
        watches, self._watches = list(self._watches.values()), {}
        for watch in watches:
            watch.end()

    def fail_all(self, error: ApiError) -> None:
        watches, self._watches = list(self._watches.values()), {}
        for watch in watches:
            watch.fail(error)

    def receive(self, text: str | bytes) -> None:
        """Dispatch one message from the server; what it cannot read, it ignores."""
        try:
            message = json.loads(text)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "error":
            self._error(message)
            return
        if kind not in ("instance-update", "instance-progress"):
            return
        try:
            item = (State if kind == "instance-update" else Progress).from_json(message)
        except (KeyError, TypeError, ValueError):
            return
        about = (message.get("machineName"), message.get("machineInstanceName"))
        for watch in self:
            if (watch.machine, watch.instance) == about:
                if isinstance(item, State):
                    watch.offer(item)
                else:
                    watch.offer_progress(item)

    def _error(self, message: dict[str, Any]) -> None:
        """The server ended a subscription. It keeps one watcher per instance per
        socket, so every subscription to that instance has ended."""
        failed = self._watches.get(str(message.get("requestId")))
        if failed is None:
            return
        status = message.get("status")
        code = message.get("code")
        error = error_for(
            status if isinstance(status, int) else 400,
            code if isinstance(code, str) else None,
            f"subscription to {failed.machine}/{failed.instance} failed",
        )
        for watch in self:
            if (watch.machine, watch.instance) == (failed.machine, failed.instance):
                del self._watches[watch.request_id]
                watch.fail(error)
