"""Secrets in trusted code: ``secret()`` answers in custom actions and services, from
the ``Backstate(secrets=...)`` of the effect's machine, and nowhere else."""

from __future__ import annotations

from typing import Any

import pytest

from backstate.chart import assign, setup
from backstate.runtime import Backstate, EventRejected, secret

from .test_backstate import run

SEEN: list[str] = []


def _action(context: Any, event: Any) -> None:
    SEEN.append(secret("TOKEN"))


async def _service(input: Any) -> Any:
    return secret("TOKEN")[::-1]


def _guard(context: Any, event: Any) -> bool:
    return bool(secret("TOKEN"))


MACHINE = setup(
    actions={"note": _action}, actors={"svc": _service}, guards={"peeks": _guard}
).create_machine(
    {
        "initial": "idle",
        "context": {},
        "states": {
            "idle": {
                "on": {
                    "note": {"actions": "note"},
                    "call": "calling",
                    "peek": {"guard": "peeks", "target": "idle"},
                    "assign": {"actions": assign({"t": lambda c, e: secret("TOKEN")})},
                }
            },
            "calling": {
                "invoke": {
                    "src": "svc",
                    "onDone": {
                        "target": "idle",
                        "actions": assign({"r": lambda c, e: e["output"]}),
                    },
                }
            },
        },
    }
)


def test_secrets_reach_actions_and_services_only(tmp_path: Any) -> None:
    SEEN.clear()
    by_machine = {"a": {"TOKEN": "alpha"}, "b": {"TOKEN": "beta"}}

    async def body() -> None:
        async with Backstate(tmp_path / "s.db", secrets=lambda m: by_machine[m]) as bs:
            bs.deploy("a", MACHINE)
            bs.deploy("b", MACHINE)
            for machine in ("a", "b"):
                await bs.create(machine, "i")
                await bs.send(machine, "i", "note")
                assert (await bs.send(machine, "i", "call")).context["r"] == by_machine[machine][
                    "TOKEN"
                ][::-1]
                for event in ("peek", "assign"):
                    with pytest.raises(EventRejected):
                        await bs.send(machine, "i", event)
            assert SEEN == ["alpha", "beta"]
        with pytest.raises(RuntimeError):
            secret("TOKEN")

    run(body)
