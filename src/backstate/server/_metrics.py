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
        yield CounterMetricFamily(
            "backstate_commits", "Rounds of transitions durably written", value=stats.commits
        )
        yield CounterMetricFamily(
            "backstate_commit_failures",
            "Rounds the store refused (their callers got 503 store-unavailable)",
            value=stats.commit_failures,
        )
        yield CounterMetricFamily(
            "backstate_commit_seconds", "Time spent in store commits", value=stats.commit_seconds
        )
        yield CounterMetricFamily(
            "backstate_transitions",
            "Transitions durably written, creations included",
            value=stats.transitions,
        )
        handled = CounterMetricFamily(
            "backstate_work",
            "Work items processed (events, messages, timers, ...)",
            labels=["kind"],
        )
        for kind, count in sorted(stats.handled.items()):
            handled.add_metric([kind], count)
        yield handled
        refused = CounterMetricFamily(
            "backstate_work_refused", "Work items that failed, by error code", labels=["code"]
        )
        for code, count in sorted(stats.refused.items()):
            refused.add_metric([code], count)
        yield refused
        entries = list(processor.entries.values())
        yield GaugeMetricFamily(
            "backstate_instances_in_memory", "Instances held in memory", value=len(entries)
        )
        yield GaugeMetricFamily(
            "backstate_subscriptions",
            "Open /rt and in-process subscriptions",
            value=sum(len(e.subscribers) for e in entries),
        )
        yield GaugeMetricFamily("backstate_timers", "Timers armed", value=len(processor.wheel))
        yield GaugeMetricFamily(
            "backstate_ready_instances",
            "Instances with work waiting for the next round",
            value=len(processor.ready),
        )
        cluster = self.backend.cluster
        if cluster is not None:
            yield GaugeMetricFamily(
                "backstate_shards_held",
                "Shards this node holds the lease of",
                value=len(cluster.held),
            )


def serve_metrics(backend: Backend, port: int, host: str = "127.0.0.1") -> None:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(RuntimeCollector(backend))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    start_http_server(port, host, registry=registry)
