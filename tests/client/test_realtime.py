"""Subscriptions over /rt: the current state, then every change; errors; one socket per
client; and reconnecting when the server goes away and comes back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backstate.client import (
    AsyncClient,
    Backoff,
    Client,
    Conflict,
    Forbidden,
    KeyAuth,
    NotFound,
    Progress,
    RejectedByMachineAuthorizer,
    State,
    Unauthorized,
)
from tests.server import test_e2e
from tests.server.test_e2e import Server

FAST = Backoff(initial_s=0.1, maximum_s=0.5)


def as_sid(server: Server, sid: str, **options: object) -> Client:
    auth = KeyAuth(server.creds["keyId"], server.creds["secret"], {"sid": sid})
    return Client(server.url, auth=auth, **options)  # type: ignore[arg-type]


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_current_state_then_every_change(server: Server, name: str) -> None:
    with as_sid(server, name, ping_interval_s=0.05) as client:  # pings are ignored
        client.instances.create("toggler", name)
        with client.instances.subscribe("toggler", name) as sub:
            first = sub.get(5)
            assert (first.value, first.public_context) == ("on", {"toggleCount": 0})
            assert sub.connected and client.realtime_connections == 1
            sent = [client.instances.send_event("toggler", name, "toggle") for _ in range(4)]
            got = [sub.get(5) for _ in range(4)]
            assert got == sent
            assert [s.value for s in got] == ["off", "on", "off", "on"]
            assert sub.latest == sent[-1]
        assert not sub.connected
        with pytest.raises(RuntimeError):
            sub.get(0.1)


def test_subscriptions_share_one_socket(server: Server, name: str) -> None:
    with as_sid(server, name) as client:
        client.instances.create("toggler", name)
        one = client.instances.subscribe("toggler", name)
        two = client.instances.subscribe("toggler", name)
        assert one.get(5).value == two.get(5).value == "on"
        client.instances.send_event("toggler", name, "toggle")
        wait_for(lambda: one.latest is not None and one.latest.value == "off")
        wait_for(lambda: two.latest is not None and two.latest.value == "off")
        one.close()
        client.instances.send_event("toggler", name, "toggle")
        wait_for(lambda: two.latest is not None and two.latest.value == "on")
        assert one.latest is not None and one.latest.value == "off"
        assert [s.value for s in one] == ["off"]  # what it had not taken yet, then the end
        two.close()
        wait_for(lambda: not two.connected)
        assert client.realtime_connections == 1
        # the last subscriber closed the socket; the next one opens a new one
        with client.instances.subscribe("toggler", name) as three:
            assert three.get(5).value == "on"
        assert client.realtime_connections == 2


def test_iteration_ends_when_closed(server: Server, name: str) -> None:
    with as_sid(server, name) as client:
        client.instances.create("toggler", name)
        sub = client.instances.subscribe("toggler", name)
        wait_for(lambda: sub.latest is not None)
        client.instances.send_event("toggler", name, "toggle")
        wait_for(lambda: sub.latest is not None and sub.latest.value == "off")
        sub.close()
        assert [s.value for s in sub] == ["on", "off"]


def test_closing_the_client_ends_its_subscriptions(server: Server, name: str) -> None:
    with as_sid(server, name) as client:
        client.instances.create("toggler", name)
        sub = client.instances.subscribe("toggler", name)
        assert sub.get(5).value == "on"
    assert list(sub) == [] and not sub.connected
    sub.close()

    async def run() -> None:
        auth = KeyAuth(server.creds["keyId"], server.creds["secret"], {"sid": name})
        async with AsyncClient(server.url, auth=auth) as client:
            sub = client.instances.subscribe("toggler", name)
            assert (await sub.get(5)).value == "on"
        assert [state async for state in sub] == []

    asyncio.run(run())


def test_subscription_errors(server: Server, name: str) -> None:
    with as_sid(server, name) as client:
        client.instances.create("toggler", name)
        with client.instances.subscribe("toggler", name + "-missing") as missing:
            with pytest.raises(NotFound) as not_found:
                missing.get(5)
            with pytest.raises(NotFound):  # and again: the subscription has ended
                next(iter(missing))
        assert not_found.value.code == "instance-not-found"
    with as_sid(server, "someone-else") as intruder:
        rejected = intruder.instances.subscribe("toggler", name)
        nothing = intruder.instances.subscribe("no-such-machine", name)
        with pytest.raises(RejectedByMachineAuthorizer):
            rejected.get(5)
        with pytest.raises(NotFound):
            nothing.get(5)
    with Client(server.url, auth="not-a-token") as forged:
        refused = forged.instances.subscribe("toggler", name)
        with pytest.raises(Unauthorized) as bad_token:
            refused.get(5)
        assert not refused.connected
        assert bad_token.value.status == 401 and bad_token.value.code
    with as_sid(server, name) as admin:
        ci = admin.keys.create(name, use="ci")  # deploys; reads no state
    with Client(server.url, auth=KeyAuth(ci.id, ci.key, {"sid": name})) as deployer:
        with pytest.raises(Forbidden) as missing_scope:
            deployer.instances.subscribe("toggler", name).get(5)
        assert missing_scope.value.code == "missing-scope"


@pytest.fixture
def restartable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Restartable]:
    servers = Restartable(tmp_path, monkeypatch)
    try:
        yield servers
    finally:
        servers.current.stop()


class Restartable:
    """A server that can be stopped and started again on the same port and database,
    and, while it is down, a second server on another port (same database)."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp
        self.monkeypatch = monkeypatch
        self.current = Server(tmp)
        self.port = self.current.port

    def stop(self) -> None:
        self.current.stop()

    def elsewhere(self) -> Server:
        return Server(self.tmp)

    def restart(self) -> None:
        self.monkeypatch.setattr(test_e2e, "_free_port", lambda: self.port)
        self.current = Server(self.tmp)


def test_reconnect_delivers_the_state_reached_while_disconnected(
    restartable: Restartable,
) -> None:
    server = restartable.current
    minted: list[float] = []

    def token() -> str:
        minted.append(time.time())
        return server.token({"sid": "r1"}, ttl=600)

    with Client(server.url, auth=token, reconnect_backoff=FAST) as client:
        client.instances.create("toggler", "r1")
        with client.instances.subscribe("toggler", "r1") as sub:
            assert sub.get(5).value == "on"
            restartable.stop()
            stopped = time.time()
            wait_for(lambda: not sub.connected)

            # A transition while the subscriber cannot connect: through another server.
            other = restartable.elsewhere()
            try:
                with as_sid(other, "r1") as side:
                    assert side.instances.send_event("toggler", "r1", "toggle").value == "off"
            finally:
                other.stop()
            assert not sub.connected and client.realtime_connections == 1

            restartable.restart()
            latest = sub.get(20)
            assert (latest.value, latest.public_context) == ("off", {"toggleCount": 1})
            assert sub.connected and client.realtime_connections == 2
            assert any(at > stopped for at in minted)  # the reconnect asked for a new token

            # and the new socket carries live updates
            client.instances.send_event("toggler", "r1", "toggle")
            assert sub.get(5).value == "on"


def test_async_reconnect_redelivers_the_latest_state(restartable: Restartable) -> None:
    server = restartable.current
    auth = KeyAuth(server.creds["keyId"], server.creds["secret"], {"sid": "r2"})

    async def run() -> None:
        async with AsyncClient(server.url, auth=auth, reconnect_backoff=FAST) as client:
            await client.instances.create("toggler", "r2")
            async with client.instances.subscribe("toggler", "r2") as sub:
                before = await sub.get(5)
                await asyncio.to_thread(restartable.stop)
                while sub.connected:
                    await asyncio.sleep(0.02)
                await asyncio.to_thread(restartable.restart)
                # Nothing changed, but the subscriber hears that this is still the state.
                assert await sub.get(20) == before
                assert client.realtime_connections == 2
                await client.instances.send_event("toggler", "r2", "toggle")
                async for state in sub:
                    assert state.value == "off"
                    break

    asyncio.run(run())


STREAMER = Path(__file__).parents[1] / "server" / "machines" / "streamer.py"


def test_progress_comes_between_the_states_to_subscribers_that_ask(
    server: Server, name: str
) -> None:
    """A service's `progress()` reaches `subscribe(..., progress=True)` as `Progress`,
    after the state that started the service and before the state of its done event;
    a plain subscription on the same socket gets the states only."""
    with Client.from_credentials(server.creds_path, claims={"sub": "u"}) as client:
        with contextlib.suppress(Conflict):  # the module's server may have it already
            client.machines.create("streamer")
            client.machine_versions.create("streamer", STREAMER.read_text())
        client.instances.create("streamer", name)
        words = ["streamed", "to", "python"]
        with (
            client.instances.subscribe("streamer", name, progress=True) as streamed,
            client.instances.subscribe("streamer", name) as plain,
        ):
            assert streamed.get(5).value == plain.get(5).value == "idle"
            done = client.instances.send_event(
                "streamer", name, {"type": "ask", "input": {"words": words}}
            )
            got = [streamed.get(5) for _ in range(2 + len(words))]
            assert isinstance(got[0], State) and got[0].value == "writing"
            assert got[1:-1] == [
                Progress("writer", {"token": w, "index": i}, got[1 + i].ts)
                for i, w in enumerate(words)
            ]
            assert got[-1] == done and streamed.latest == done
            assert [plain.get(5).value, plain.get(5).value] == ["writing", "idle"]
            with pytest.raises(TimeoutError):
                plain.get(0.3)

    async def run() -> None:
        async with (
            AsyncClient.from_credentials(server.creds_path, claims={"sub": "u"}) as client,
            client.instances.subscribe("streamer", name, progress=True) as sub,
        ):
            assert (await sub.get(5)).value == "idle"
            ask = {"type": "ask", "input": {"words": words}}
            await client.instances.send_event("streamer", name, ask)
            items = [await sub.get(5) for _ in range(2 + len(words))]
            tokens = [i.data["token"] for i in items if isinstance(i, Progress)]
            assert tokens == words

    asyncio.run(run())
