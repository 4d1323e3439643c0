"""Secrets in machine code, for the secrets tests: `use` runs a service that answers
the SHA-256 of the secret API_KEY (or the error of reading it), `peek` has a guard
that tries to read it (which must fail: transitions never see secrets)."""

from __future__ import annotations

import hashlib
from typing import Any

from backstate.chart import assign, setup
from backstate.runtime import secret


def digest(input: Any) -> Any:
    return hashlib.sha256(secret("API_KEY").encode()).hexdigest()


def peeks(context: Any, event: Any) -> bool:
    return bool(secret("API_KEY"))


machine = setup(actors={"digest": digest}, guards={"peeks": peeks}).create_machine(
    {
        "initial": "idle",
        "context": {"public": {}},
        "states": {
            "idle": {
                "on": {
                    "use": "using",
                    "peek": {"guard": "peeks", "target": "idle"},
                }
            },
            "using": {
                "invoke": {
                    "src": "digest",
                    "onDone": {
                        "target": "idle",
                        "actions": assign({"public": lambda c, e: {"digest": e["output"]}}),
                    },
                    "onError": {
                        "target": "idle",
                        "actions": assign(
                            {"public": lambda c, e: {"error": e["error"]["message"]}}
                        ),
                    },
                }
            },
        },
    }
)


def allow_read(**_: Any) -> bool:
    return True


def allow_write(**_: Any) -> bool:
    return True
