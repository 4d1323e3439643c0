"""Guided onboarding (State Backed's onboarding example): a linear tour whose states
carry position tags (`fullscreen`, `right`, `bottom`) for the UI, then parallel
contextual-help regions, then a complete state that customer support can reset.

The user (`sub == context.uid`) reads and writes; customer support
(`isCustomerSupport`) may read, and may write only events whose type starts with
"Customer support:" (the original checked `event.name`, a bug)."""

from __future__ import annotations

from typing import Any

from backstate.chart import assign, setup


def _step(tag: str, event: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"tags": [tag], "on": {event: target, **extra}}


machine = setup().create_machine(
    {
        "id": "onboarding",
        "initial": "Guided Onboarding",
        "context": {
            "uid": None,
            "public": {"addExampleRequirements": False, "applyTemplate": False},
        },
        "states": {
            "Guided Onboarding": {
                "tags": ["show-onboarding"],
                "initial": "Intro",
                "states": {
                    "Intro": _step("fullscreen", "Next", "What's a PRD"),
                    "What's a PRD": _step("fullscreen", "Next", "Requirements blocks"),
                    "Requirements blocks": _step("right", "Add requirement block", "Name flow"),
                    "Name flow": _step("right", "Name flow", "Try adding requirements"),
                    "Try adding requirements": _step(
                        "right",
                        "Analyzed requirement",
                        "Explain analysis",
                        **{
                            "Add example requirements": {
                                "actions": assign(
                                    {
                                        "public": lambda c, e: {
                                            **c.get("public", {}),
                                            "addExampleRequirements": True,
                                        }
                                    }
                                )
                            }
                        },
                    ),
                    "Explain analysis": _step("bottom", "Next", "Explain layers"),
                    "Explain layers": _step("bottom", "Added layer", "Template selection"),
                    "Template selection": {
                        "tags": ["bottom"],
                        "on": {
                            "Skip template": "Done",
                            "Apply template": {
                                "target": "Done",
                                "actions": assign(
                                    {
                                        "public": lambda c, e: {
                                            **c.get("public", {}),
                                            "applyTemplate": True,
                                        }
                                    }
                                ),
                            },
                        },
                    },
                    "Done": {"type": "final"},
                },
                "onDone": "Contextual help",
            },
            "Contextual help": {
                "type": "parallel",
                "states": {
                    "Walkthrough": {
                        "initial": "Visible",
                        "states": {
                            "Visible": {
                                "tags": ["walkthrough-help"],
                                "on": {"Hide walkthrough help": "Hidden"},
                            },
                            "Hidden": {"type": "final"},
                        },
                    },
                    "Requirements": {
                        "initial": "Visible",
                        "states": {
                            "Visible": {
                                "tags": ["requirements-help"],
                                "on": {"Hide requirements help": "Hidden"},
                            },
                            "Hidden": {"type": "final"},
                        },
                    },
                },
                "onDone": "Complete",
            },
            "Complete": {
                "on": {
                    "Customer support: Reset to guided onboarding": "Guided Onboarding",
                    "Customer support: Reset to contextual help": "Contextual help",
                }
            },
        },
    }
)


def _is_user(auth_context: dict[str, Any], context: Any) -> bool:
    return (
        isinstance(context, dict)
        and auth_context.get("sub") is not None
        and auth_context.get("sub") == context.get("uid")
    )


def allow_read(*, auth_context: dict[str, Any], context: Any, **_: Any) -> bool:
    return _is_user(auth_context, context) or auth_context.get("isCustomerSupport") is True


def allow_write(*, auth_context: dict[str, Any], context: Any, event: Any = None, **_: Any) -> bool:
    if _is_user(auth_context, context):
        return True
    event_type = event.get("type") if isinstance(event, dict) else event
    return (
        auth_context.get("isCustomerSupport") is True
        and isinstance(event_type, str)
        and event_type.startswith("Customer support:")
    )
