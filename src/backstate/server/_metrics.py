"""Prometheus metrics of a serving process, on a port of their own.

``backstate serve --metrics-port 9780`` starts prometheus_client's HTTP server in a
thread (on 127.0.0.1 unless ``--metrics-host`` says otherwise: the metrics carry no
authorization, so they stay off the API's port). What the runtime counts
(``runtime._stats.Stats``) and how many instances, timers and subscribers it holds are
read at each scrape; prometheus_client adds the process's CPU, memory and file
descriptors and the garbage collector's collections.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ._backend import Backend


class RuntimeCollector(Collector):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def collect(self) -> Iterator[Metric]:
        processor = self.backend.runtime.processor
        stats = processor.stats
        entries = list(processor.entries.values())
        counters: list[tuple[str, str, float]] = [
            ("backstate_commits", "Rounds of transitions durably written", stats.commits),
            (
                "backstate_commit_failures",
                "Rounds the store refused (their callers got 503 store-unavailable)",
                stats.commit_failures,
            ),
            ("backstate_commit_seconds", "Time spent in store commits", stats.commit_seconds),
            (
                "backstate_transitions",
                "Transitions durably written, creations included",
                stats.transitions,
            ),
        ]
        gauges: list[tuple[str, str, float]] = [
            ("backstate_instances_in_memory", "Instances held in memory", len(entries)),
            (
                "backstate_subscriptions",
                "Open /rt and in-process subscriptions",
                sum(len(e.subscribers) for e in entries),
            ),
            ("backstate_timers", "Timers armed", len(processor.wheel)),
            (
                "backstate_ready_instances",
                "Instances with work waiting for the next round",
                len(processor.ready),
            ),
        ]
        if self.backend.cluster is not None:
            held = len(self.backend.cluster.held)
            gauges.append(("backstate_shards_held", "Shards this node holds the lease of", held))
        for name, documentation, value in counters:
            yield CounterMetricFamily(name, documentation, value=value)
        for name, documentation, value in gauges:
            yield GaugeMetricFamily(name, documentation, value=value)
        for name, documentation, label, counts in (
            (
                "backstate_work",
                "Work items processed (events, messages, timers, ...)",
                "kind",
                stats.handled,
            ),
            (
                "backstate_work_refused",
                "Work items that failed, by error code",
                "code",
                stats.refused,
            ),
        ):
            family = CounterMetricFamily(name, documentation, labels=[label])
            for key, count in sorted(counts.items()):
                family.add_metric([key], count)
            yield family


def serve_metrics(backend: Backend, port: int, host: str = "127.0.0.1") -> None:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(RuntimeCollector(backend))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    start_http_server(port, host, registry=registry)
