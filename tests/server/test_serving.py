"""How `backstate serve` runs as a process: its own log lines on standard error (and
machine code's output in the instances' logs only; a failure of machine code in both), and a shutdown that ends within its grace
period whatever is in flight."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from .test_e2e import Server

TROUBLED = Path(__file__).with_name("machines") / "troubled.py"


def _create(server: Server) -> tuple[str, dict[str, str]]:
    headers = server.headers({"sub": "someone"})
    url = f"{server.url}/machines/troubled"
    assert httpx.post(url, json={"slug": "t"}, headers=headers).status_code == 200
    return f"{url}/i/t/events", headers


def test_server_logs_reach_stderr_and_machine_output_stays_in_instance_logs(
    tmp_path: Path,
) -> None:
    server = Server(tmp_path, deploy=TROUBLED)
    try:
        events, headers = _create(server)
        r = httpx.post(events, json={"event": "explode"}, headers=headers)
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "authorizer-failed"
        assert httpx.post(events, json={"event": "print"}, headers=headers).status_code == 200
        admin = server.headers({"sub": "admin"})
        for _ in range(50):
            logs = httpx.get(f"{server.url}/logs", params={"machine": "troubled"}, headers=admin)
            printed = [e["log"] for e in logs.json()["logs"]]
            if "the guard printed this" in printed:
                break
            time.sleep(0.1)
        assert "the guard printed this" in printed
        # The authorizer's failure is the machine's developer's to see, with its traceback
        # (and the operator's too, on stderr, below); the server's own lines are not.
        raised = [line for line in printed if line.startswith("allow_write raised ValueError")]
        assert len(raised) == 1 and "Traceback" in raised[0], printed
        assert not any("Uvicorn" in line or "GET /" in line for line in printed), printed
    finally:
        server.stop()
    output = "".join(server.output)
    failure = [line for line in output.splitlines() if "allow_write raised ValueError" in line]
    assert failure, output
    assert ".troubled@ver_" in failure[0] and "/t:" in failure[0], failure[0]
    assert "the authorizer exploded" in output  # its traceback
    assert "the guard printed this" not in output


def test_log_level_hides_lower_lines(tmp_path: Path) -> None:
    server = Server(tmp_path, deploy=TROUBLED, options=("--log-level", "error"))
    try:
        events, headers = _create(server)
        assert httpx.post(events, json={"event": "explode"}, headers=headers).status_code == 403
    finally:
        server.stop()
    assert "allow_write raised" not in "".join(server.output)


def test_sigterm_answers_waiting_requests_and_exits_within_the_grace(tmp_path: Path) -> None:
    server = Server(tmp_path, deploy=TROUBLED, options=("--shutdown-grace", "1"))
    try:
        events, headers = _create(server)
        answer: dict[str, Any] = {}

        def wait() -> None:
            # The 30 s service keeps this request waiting for the instance to settle.
            r = httpx.post(events, json={"event": "wait"}, headers=headers, timeout=60)
            answer.update(status=r.status_code, body=r.json(), at=time.monotonic())

        waiting = threading.Thread(target=wait)
        waiting.start()
        time.sleep(0.5)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(10)
        exited = time.monotonic() - signalled
        waiting.join(10)
        assert answer["status"] == 503, answer
        assert answer["body"]["code"] == "shutting-down"
        assert answer["at"] - signalled < 3
        assert exited < 5, exited
    finally:
        server.stop()
    # The wait was said, with how long it may take.
    output = "".join(server.output)
    assert "shutting down: 1 request in flight may take up to 1 s" in output, output


def test_two_racing_creates_are_both_answered(tmp_path: Path) -> None:
    """Two clients create the same instance at once (State Backed's React hook does on
    every mount): one gets the instance, the other 409 invalid-state, never silence."""
    import concurrent.futures

    server = Server(tmp_path)
    try:
        headers = {"sid": ""}
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for i in range(30):
                name = f"race-{i}"
                headers = server.headers({"sid": name})

                def create(name: str = name, headers: dict[str, str] = headers) -> httpx.Response:
                    return httpx.post(
                        f"{server.url}/machines/toggler",
                        json={"slug": name},
                        headers=headers,
                        timeout=5,
                    )

                answers = sorted(r.status_code for r in pool.map(lambda _: create(), range(2)))
                assert answers == [200, 409], (name, answers)
    finally:
        server.stop()
