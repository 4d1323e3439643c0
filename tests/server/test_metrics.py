"""``serve --metrics-port``: Prometheus metrics on a port of their own, counting what the
runtime did (exactly, on a fresh server) and what it holds, plus the process's own."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .test_e2e import Server, _free_port


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    deadline = time.monotonic() + 10
    while True:
        try:
            text = httpx.get(url, timeout=5).text
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "no metrics port"
            time.sleep(0.1)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_what_the_runtime_did(tmp_path: Path) -> None:
    port = _free_port()
    server = Server(tmp_path, options=("--metrics-port", str(port)))
    try:
        me = server.headers({"sid": "m1"})
        base = f"{server.url}/machines/toggler"
        assert httpx.post(base, json={"slug": "m1"}, headers=me).status_code == 200
        for _ in range(3):
            r = httpx.post(f"{base}/i/m1/events", json={"event": "toggle"}, headers=me)
            assert r.status_code == 200
        other = server.headers({"sid": "someone-else"})
        r = httpx.post(f"{base}/i/m1/events", json={"event": "toggle"}, headers=other)
        assert r.status_code == 403
        metrics = _scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        server.stop()

    def value(name: str, **labels: str) -> float:
        return metrics[(name, tuple(sorted(labels.items())))]

    assert value("backstate_transitions_total") == 4  # the creation and three toggles
    assert value("backstate_work_total", kind="create") == 1
    assert value("backstate_work_total", kind="api") == 4
    assert value("backstate_work_refused_total", code="rejected-by-machine-authorizer") == 1
    assert 1 <= value("backstate_commits_total") <= 4
    assert value("backstate_commit_seconds_total") > 0
    assert value("backstate_commit_failures_total") == 0
    assert value("backstate_instances_in_memory") == 1
    assert value("backstate_timers") == 0
    assert value("backstate_subscriptions") == 0
    assert value("process_resident_memory_bytes") > 10_000_000
    assert any(name == "python_gc_collections_total" for name, _ in metrics)
