"""A newcomer's purchase order (issue 15): ``submit`` moves a draft to review, where
``approve`` needs the ``isManager`` guard (true only for ``{"role": "manager"}``),
``reject`` runs the ``notifyBuyer`` action, which raises, and ``explode`` runs an
``assign`` whose function raises; ``close`` ends it."""

from __future__ import annotations

from typing import Any

from backstate.chart import assign, setup


def is_manager(context: dict[str, Any], event: dict[str, Any]) -> bool:
    return event.get("role") == "manager"


def notify_buyer(context: dict[str, Any], event: dict[str, Any]) -> None:
    raise ConnectionError("mail server refused the connection")


def total(context: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    return {"total": 1 / event.get("count", 0)}


machine = setup(
    guards={"isManager": is_manager},
    actions={"notifyBuyer": notify_buyer, "total": assign({"public": total})},
).create_machine(
    {
        "id": "purchase-order",
        "initial": "draft",
        # XState's context factory: the buyer comes from the instance's input.
        "context": lambda input: {"public": {"total": 0}, "buyer": (input or {}).get("buyer")},
        "states": {
            "draft": {"on": {"submit": "review"}},
            "review": {
                "on": {
                    "approve": {"guard": "isManager", "target": "approved"},
                    "reject": {"actions": "notifyBuyer"},
                    "explode": {"actions": "total"},
                }
            },
            "approved": {"on": {"close": "closed"}},
            "closed": {"type": "final"},
        },
    }
)


def allow_read(**_: Any) -> bool:
    return True


def allow_write(**_: Any) -> bool:
    return True
