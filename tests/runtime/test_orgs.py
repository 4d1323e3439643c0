"""Orgs stay apart: the code of one org's machine can neither send events into another
org's instances nor create instances there, whatever address it builds; receivers'
authorizers see the sender with its org. The server runs each org's machines as
``<org>.<machine>``; these tests use that naming directly, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from backstate.chart import assign, send_to, setup
from backstate.runtime import Backstate, instance_ref, persistent
from tests.store.targets import Target

SINK = {
    "initial": "r",
    "context": {"n": 0},
    "states": {"r": {"on": {"hit": {"actions": assign({"n": lambda c, e: c["n"] + 1})}}}},
}


def _attacker(target_machine: str) -> Any:
    """Sends ``hit`` to ``target_machine``/x and starts a persistent child there."""
    return setup(actors={"child": persistent(target_machine, "planted")}).create_machine(
        {
            "initial": "s",
            "context": {},
            "states": {
                "s": {
                    "on": {
                        "send": {"actions": send_to(instance_ref(target_machine, "x"), "hit")},
                        "spawn": "spawning",
                    }
                },
                "spawning": {
                    "invoke": {
                        "id": "child",
                        "src": "child",
                        "onError": {
                            "target": "failed",
                            "actions": assign({"error": lambda c, e: e["error"]}),
                        },
                    }
                },
                "failed": {},
            },
        }
    )


def test_machine_code_cannot_reach_another_orgs_instances(db: Target) -> None:
    writes: list[Any] = []

    def allow_write(**kw: Any) -> bool:
        writes.append(kw["auth_context"])
        return True

    async def body() -> None:
        async with Backstate(db.open()) as bs:
            sink = setup().create_machine(SINK)
            bs.deploy("orgA.sink", sink, allow_write=allow_write)
            bs.deploy("orgB.sink", sink, allow_write=allow_write)
            await bs.create("orgA.sink", "x")
            # orgB's machine names orgA's machine with its org, as a hostile file would.
            bs.deploy("orgB.attacker", _attacker("orgA.sink"))
            bs.deploy("orgB.friend", _attacker("sink"))
            await bs.create("orgB.attacker", "a")
            await bs.create("orgB.friend", "f")
            await bs.create("orgB.sink", "x")

            await bs.send("orgB.attacker", "a", "send")
            state = await bs.send("orgB.attacker", "a", "spawn")
            assert state.value == "failed"
            assert state.context["error"]["name"] == "cross-org-address"
            # The same org's machine, addressed by its plain name, is reached.
            await bs.send("orgB.friend", "f", "send")
            for _ in range(200):
                if (await bs.get("orgB.sink", "x")).context["n"] == 1:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # a cross-org message would have arrived by now

            assert (await bs.get("orgA.sink", "x")).context["n"] == 0
            assert (await bs.get("orgB.sink", "x")).context["n"] == 1
            assert db.rows("SELECT count(*) FROM instances WHERE machine = 'orgA.sink'") == [(1,)]
            assert db.rows("SELECT count(*) FROM instances WHERE name = 'planted'") == [(0,)]
            assert db.rows("SELECT count(*) FROM inbox") == [(0,)]
            # The receiver's authorizer saw the sender with its org (creations carry none).
            assert [w for w in writes if w] == [
                {
                    "stateBackedSender": {
                        "machineName": "friend",
                        "machineInstanceName": "f",
                        "orgId": "orgB",
                    }
                }
            ]
            logs = await bs.logs(machine="orgB.attacker", instance="a")
            refused = [r.message for r in logs if r.level == "error"]
            assert len(refused) == 2, refused
            assert all("cross-org-address" in m for m in refused), refused

    asyncio.run(body())
