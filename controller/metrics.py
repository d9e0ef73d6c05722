"""Prometheus metrics (prometheus-client), served on SHARDRING_METRICS_PORT / --metrics-port."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)
RING = ["namespace", "ring"]
QUERY = ["connection", "service"]

RING_MEMBERS = Gauge("shardring_ring_members", "Members in the published ring.", RING,
                     registry=REGISTRY)
RING_VERSION = Gauge("shardring_ring_version", "Published ring version.", RING, registry=REGISTRY)
RESHARDS = Counter("shardring_reshards_total", "Published ring changes.", RING, registry=REGISTRY)
SHARDS_MOVED = Counter("shardring_shards_moved_total", "Shard replicas that changed owner.", RING,
                       registry=REGISTRY)
CONFIGMAP_WRITES = Counter("shardring_configmap_writes_total", "ConfigMap creates and updates.",
                           RING, registry=REGISTRY)
PUBLISH_LATENCY = Histogram(
    "shardring_publish_latency_seconds",
    "From the Consul change being observed to the ConfigMap being written (includes any "
    "stabilization window).", registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
CONSUL_ERRORS = Counter("shardring_consul_watch_errors_total", "Failed Consul blocking queries.",
                        QUERY, registry=REGISTRY)
CONSUL_CHANGES = Counter("shardring_consul_membership_changes_total",
                         "Consul replies that changed the instance list.", QUERY,
                         registry=REGISTRY)


class OperatorGauges(Collector):
    """Gauges read from the running operator at scrape time: rings by condition and status, and
    the membership watchers running. The endpoint is process-wide; ``serve`` points it at the
    operator that started last."""

    def __init__(self) -> None:
        self.conditions: Callable[[], Iterable[tuple[str, str]]] = lambda: ()
        self.active_queries: Callable[[], int] = lambda: 0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("shardring_rings", "Rings by condition and status.",
                                   labels=["condition", "status"])
        counts: dict[tuple[str, str], int] = {}
        for pair in self.conditions():
            counts[pair] = counts.get(pair, 0) + 1
        for (condition, status), count in sorted(counts.items()):
            family.add_metric([condition, status], count)
        yield family
        yield GaugeMetricFamily("shardring_consul_queries_active",
                                "Consul blocking-query watchers running (one per distinct query).",
                                value=self.active_queries())


_GAUGES = OperatorGauges()
REGISTRY.register(_GAUGES)
_served: tuple[str, int] | None = None


def serve(port: int, conditions: Callable[[], Iterable[tuple[str, str]]],
          active_queries: Callable[[], int], address: str = "0.0.0.0") -> None:
    """Serve the metrics endpoint (once per process; its thread never blocks kopf's loop)."""
    global _served
    _GAUGES.conditions, _GAUGES.active_queries = conditions, active_queries
    if _served is None:
        start_http_server(port, addr=address, registry=REGISTRY)
        _served = (address, port)


def forget_ring(namespace: str, ring: str) -> None:
    """A deleted ring's series go with it."""
    for metric in (RING_MEMBERS, RING_VERSION, RESHARDS, SHARDS_MOVED, CONFIGMAP_WRITES):
        try:
            metric.remove(namespace, ring)
        except KeyError:
            pass


def forget_query(connection: str, service: str) -> None:
    """A stopped watcher's series go with it (when no other query of that service runs)."""
    for metric in (CONSUL_ERRORS, CONSUL_CHANGES):
        try:
            metric.remove(connection, service)
        except KeyError:
            pass
