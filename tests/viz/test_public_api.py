"""The public surface of backstate.viz does not drift."""

from __future__ import annotations

from backstate import viz

PUBLIC_API = ["ACTIVE_CLASS", "check_outline", "outline", "state_names", "to_mermaid"]


def test_public_api() -> None:
    assert sorted(viz.__all__) == PUBLIC_API
    for name in PUBLIC_API:
        assert hasattr(viz, name)
