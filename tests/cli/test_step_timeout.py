"""`backstate serve --step-timeout`: a service past it is stopped with a Timeout error,
and says so in its instance's logs (a sandboxed server)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.server.test_e2e import Server

from .conftest import FILES, Cli


def test_a_service_past_the_step_timeout_is_stopped_and_logged(tmp_path: Path) -> None:
    server = Server(tmp_path, deploy=FILES / "slow_supplier.py", options=("--step-timeout", "0.5"))
    try:
        cli = Cli(server.creds_path.parent)
        cli("instances", "create", "-m", "slow-supplier", "-i", "s")
        started = time.monotonic()
        cli("instances", "send-event", "-m", "slow-supplier", "-i", "s", "-e", "order")
        assert time.monotonic() - started < 5  # answered at the timeout, not after 10 s
        for _ in range(100):
            state = cli("--json", "instances", "get", "-m", "slow-supplier", "-i", "s").json()
            if state["state"] == "failed":
                break
            time.sleep(0.1)
        assert state["state"] == "failed"
        logs = cli("logs", "get", "-m", "slow-supplier").stdout
        assert (
            "service 'supplier' ('call') failed: Timeout: stopped after the 0.5 s step timeout"
            in logs
        )
    finally:
        server.stop()


@pytest.mark.parametrize("seconds", ["0", "-1", "100000"])
def test_a_step_timeout_out_of_range_is_refused(tmp_path: Path, seconds: str) -> None:
    refused = Cli(tmp_path)(
        "serve", "--db", str(tmp_path / "b.db"), "--step-timeout", seconds, ok=False
    )
    assert refused.status == 1 and refused.error.endswith("(invalid-option)")
