"""The onboarding example end to end: tags drive the UI, parallel help regions finish
the tour, customer support may only send its own events."""

from __future__ import annotations

import httpx

from .test_e2e import Server


def test_onboarding_tour_help_and_support(server: Server) -> None:
    me = server.headers({"sub": "test-123"})
    base = server.deploy("onboarding-example", "onboarding.py")

    created = httpx.post(
        base, json={"slug": "test-123", "context": {"uid": "test-123"}}, headers=me
    )
    assert created.status_code == 200, created.text
    assert created.json()["tags"] == ["fullscreen", "show-onboarding"]

    def send(event: str, headers: dict[str, str] = me) -> httpx.Response:
        return httpx.post(f"{base}/i/test-123/events", json={"event": event}, headers=headers)

    tour = [
        ("Next", ["fullscreen", "show-onboarding"]),
        ("Next", ["right", "show-onboarding"]),
        ("Add requirement block", ["right", "show-onboarding"]),
        ("Name flow", ["right", "show-onboarding"]),
        ("Add example requirements", ["right", "show-onboarding"]),
        ("Analyzed requirement", ["bottom", "show-onboarding"]),
        ("Next", ["bottom", "show-onboarding"]),
        ("Added layer", ["bottom", "show-onboarding"]),
    ]
    for event, tags in tour:
        response = send(event)
        assert response.status_code == 200, (event, response.text)
        assert response.json()["tags"] == tags, event
    done = send("Apply template").json()
    assert done["state"] == {
        "Contextual help": {"Walkthrough": "Visible", "Requirements": "Visible"}
    }
    assert done["tags"] == ["requirements-help", "walkthrough-help"]
    assert done["publicContext"] == {"addExampleRequirements": True, "applyTemplate": True}

    support = server.headers({"sub": "agent-7", "isCustomerSupport": True})
    stranger = server.headers({"sub": "someone"})
    assert httpx.get(f"{base}/i/test-123", headers=support).status_code == 200
    assert httpx.get(f"{base}/i/test-123", headers=stranger).status_code == 403
    assert send("Hide walkthrough help", support).status_code == 403  # not a support event
    assert send("Hide walkthrough help").json()["tags"] == ["requirements-help"]
    assert send("Hide requirements help").json()["state"] == "Complete"
    assert send("Customer support: Reset to contextual help", stranger).status_code == 403
    reset = send("Customer support: Reset to guided onboarding", support)
    assert reset.status_code == 200 and reset.json()["state"] == {"Guided Onboarding": "Intro"}
