"""`scripts/serve` runs the research agent out of the box: with no model configured, it
starts the fake model on loopback, gives the agent its address and key as the org's
secrets and allows egress to it (and the fake model stops with the server); with
OPENAI_BASE_URL and OPENAI_API_KEY set, the agent calls that model with that key.
The script itself runs, as a user runs it (on a free port, a database and credentials
in the test's folder), and the run is driven with the `backstate` command."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from examples.fake_openai import FakeModel
from tests.cli.conftest import Running, free_port

ROOT = Path(__file__).resolve().parents[2]
BACKSTATE = str(Path(sys.executable).parent / "backstate")


def _serve(tmp: Path, env: dict[str, str]) -> tuple[Running, dict[str, str]]:
    port = free_port()
    credentials = tmp / "credentials.json"
    process = subprocess.Popen(
        [
            str(ROOT / "scripts" / "serve"),
            *("--port", str(port), "--db", str(tmp / "dev.db")),
            *("--credentials", str(credentials)),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = Running(process)
    running.wait_for("watching examples for changes", timeout=120)
    return running, {**env, "BACKSTATE_HOME": str(tmp)}


def _backstate(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [BACKSTATE, "--json", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def _run_the_agent(env: dict[str, str]) -> dict[str, Any]:
    who = ("--auth-context", '{"sub": "ada"}')
    topic = json.dumps({"topic": "durable execution", "reviewer": "ada"})
    created = _backstate(
        env, "instances", "create", "-m", "research-agent", "-i", "run-1", "--input", topic, *who
    )
    assert created["state"] == "awaitingApproval", created
    assert created["publicContext"]["costUsd"] > 0
    approved = _backstate(
        env, "instances", "send-event", "-m", "research-agent", "-i", "run-1", "-e", "approve", *who
    )
    assert approved["state"] == "published", approved
    return dict(approved["publicContext"])


def _environment() -> dict[str, str]:
    unset = ("OPENAI_BASE_URL", "OPENAI_API_KEY", "BACKSTATE_HOME", "VIRTUAL_ENV", "COLUMNS")
    return {k: v for k, v in os.environ.items() if k not in unset}


def _refused(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_the_research_agent_runs_against_the_fake_model_out_of_the_box(tmp_path: Path) -> None:
    serving, env = _serve(tmp_path, _environment())
    try:
        note = next(line for line in serving.seen if line.startswith("research agent:"))
        model = re.search(r"http://127\.0\.0\.1:(\d+)/v1", note)
        assert model is not None, note
        assert any(line.startswith("deployed examples/research_agent.py") for line in serving.seen)
        public = _run_the_agent(env)
        assert public["questions"][0] == "What is durable execution?"
        assert public["summary"].startswith("The fake model read")
    finally:
        serving.stop()
    # The fake model stops with the server.
    deadline = time.monotonic() + 10
    while not _refused(int(model.group(1))):
        assert time.monotonic() < deadline, "the fake model outlived the server"
        time.sleep(0.2)


def test_two_variables_point_the_agent_at_another_model(tmp_path: Path) -> None:
    with FakeModel(api_key="sk-provider-key") as provider:
        env = {
            **_environment(),
            "OPENAI_BASE_URL": provider.url,
            "OPENAI_API_KEY": "sk-provider-key",
        }
        serving, env = _serve(tmp_path, env)
        try:
            assert not any(line.startswith("research agent:") for line in serving.seen)
            public = _run_the_agent(env)
        finally:
            serving.stop()
        # Every call reached this model, with this key (it refuses any other).
        assert [c["status"] for c in provider.calls] == [200] * 5
        assert public["status"] == "published"
