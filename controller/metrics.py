"""Prometheus metrics (prometheus-client), served on SHARDRING_METRICS_PORT / --metrics-port."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, Protocol
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer, _get_best_family
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_resident_memory_bytes, CPU, open fds
RING = ["namespace", "ring"]
QUERY = ["connection", "service"]
SOURCE_QUERY = ["source", "connection", "query"]  # source kind; query: service, prefix or path

RING_MEMBERS = Gauge("shardring_ring_members", "Members in the published ring.", RING,
                     registry=REGISTRY)
RING_VERSION = Gauge("shardring_ring_version", "Published ring version.", RING, registry=REGISTRY)
RESHARDS = Counter("shardring_reshards_total", "Published ring changes.", RING, registry=REGISTRY)
REBALANCES = Counter("shardring_rebalances_total",
                     "Ring versions published to even out measured load (spec.balance.by: load).",
                     RING, registry=REGISTRY)
SHARDS_MOVED = Counter("shardring_shards_moved_total", "Shard replicas that changed owner.", RING,
                       registry=REGISTRY)
CONFIGMAP_WRITES = Counter("shardring_configmap_writes_total", "ConfigMap creates and updates.",
                           RING, registry=REGISTRY)
PUBLISH_LATENCY = Histogram(
    "shardring_publish_latency_seconds",
    "From the membership change being observed to the ConfigMap being written (includes any "
    "stabilization window).", registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
EVENTS = Counter("shardring_events_total",
                 "Events about rings, by type and reason: Resharded, HandoverComplete, "
                 "HandoverTimedOut, and each problem (the Degraded reason) as it begins.",
                 [*RING, "type", "reason"], registry=REGISTRY)
RECONCILE_ERRORS = Counter("shardring_reconcile_errors_total",
                           "Passes that failed unexpectedly and are retried with backoff (an "
                           "unreachable API server is not counted: it is one outage, not one "
                           "error per ring).", RING, registry=REGISTRY)
SOURCE_ERRORS = Counter("shardring_source_errors_total",
                        "Failed reads of a membership source, by reason (unreachable, "
                        "permission_denied, refused, over_limit, failed).",
                        SOURCE_QUERY + ["reason"], registry=REGISTRY)
SOURCE_CHANGES = Counter("shardring_source_membership_changes_total",
                         "Source replies that changed the instance list.", SOURCE_QUERY,
                         registry=REGISTRY)
SOURCE_REPLY_BYTES = Histogram(
    "shardring_source_reply_bytes", "Size of the membership replies read, by source kind.",
    ["source"], registry=REGISTRY,
    buckets=(256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20,
             64 << 20))
# Deprecated (Consul only; the source_ metrics above count every source): kept while dashboards
# and alerts move.
CONSUL_ERRORS = Counter("shardring_consul_watch_errors_total",
                        "Deprecated: shardring_source_errors_total{source=\"consul\"}.",
                        QUERY, registry=REGISTRY)
CONSUL_CHANGES = Counter("shardring_consul_membership_changes_total",
                         "Deprecated: shardring_source_membership_changes_total"
                         "{source=\"consul\"}.", QUERY, registry=REGISTRY)


class Query(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def connection(self) -> str: ...

    @property
    def target(self) -> str: ...


def _source_labels(query: Query) -> tuple[str, str, str]:
    return query.kind, query.connection, query.target


def source_error(query: Query, reason: str) -> None:
    SOURCE_ERRORS.labels(*_source_labels(query), reason).inc()
    if query.kind == "consul":
        CONSUL_ERRORS.labels(query.connection, query.target).inc()


def source_changed(query: Query) -> None:
    SOURCE_CHANGES.labels(*_source_labels(query)).inc()
    if query.kind == "consul":
        CONSUL_CHANGES.labels(query.connection, query.target).inc()


def source_reply(query: Query, size: int) -> None:
    SOURCE_REPLY_BYTES.labels(query.kind).observe(size)


class RingCondition(NamedTuple):
    namespace: str
    ring: str
    condition: str
    status: str
    reason: str


class RingImbalance(NamedTuple):
    namespace: str
    ring: str
    imbalance: float  # status.measuredLoad.imbalance


class OperatorGauges(Collector):
    """Gauges read from the running operator at scrape time: rings by condition and status, and
    the membership watchers running. The endpoint is process-wide; ``serve`` points it at the
    operator that started last."""

    def __init__(self) -> None:
        self.conditions: Callable[[], Iterable[RingCondition]] = lambda: ()
        self.active_queries: Callable[[], Mapping[str, int]] = dict
        self.imbalances: Callable[[], Iterable[RingImbalance]] = lambda: ()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("shardring_rings", "Rings by condition and status.",
                                   labels=["condition", "status"])
        each = GaugeMetricFamily("shardring_ring_condition",
                                 "Each ring's conditions as its status shows them: 1 for the "
                                 "status and reason it has now (alerts and dashboards select "
                                 "on them).",
                                 labels=[*RING, "condition", "status", "reason"])
        counts: dict[tuple[str, str], int] = {}
        for found in self.conditions():
            pair = (found.condition, found.status)
            counts[pair] = counts.get(pair, 0) + 1
            each.add_metric([found.namespace, found.ring, found.condition, found.status,
                             found.reason], 1)
        for (condition, status), count in sorted(counts.items()):
            family.add_metric([condition, status], count)
        yield family
        yield each
        imbalance = GaugeMetricFamily(
            "shardring_ring_load_imbalance",
            "Each ring's measured load imbalance (status.measuredLoad: the highest member load "
            "over its weighted fair share), where its members' agents report load.",
            labels=RING)
        for ring in self.imbalances():
            imbalance.add_metric([ring.namespace, ring.ring], ring.imbalance)
        yield imbalance
        active = self.active_queries()
        watchers = GaugeMetricFamily("shardring_source_watchers_active",
                                     "Membership watchers running (one per distinct query), by "
                                     "source kind.", labels=["source"])
        for kind, count in sorted(active.items()):
            watchers.add_metric([kind], count)
        yield watchers
        yield GaugeMetricFamily("shardring_consul_queries_active",
                                "Deprecated: shardring_source_watchers_active{source=\"consul\"}.",
                                value=active.get("consul", 0))


_GAUGES = OperatorGauges()
REGISTRY.register(_GAUGES)
_served: tuple[str, int] | None = None


# A page beside the metrics: (path, query string) -> (HTTP status, HTML).
Pages = Callable[[str, str], tuple[int, str]]


class _Endpoint:
    """What the endpoint serves: /metrics, and the pages of the operator that started last."""

    def __init__(self) -> None:
        self.metrics = make_wsgi_app(REGISTRY)
        self.pages: Pages | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO") or "/"
        pages = self.pages
        if path == "/metrics" or pages is None:
            return self.metrics(environ, start_response)
        query = environ.get("QUERY_STRING") or ""
        if path != "/" and path.endswith("/"):
            # The pages link relatively (they work behind a proxy's path prefix), so /rings/
            # would lead to /rings/rings/...: send the browser to the page without the slash.
            trailing = len(path) - len(path.rstrip("/"))
            target = "../" * trailing + path.rstrip("/").rpartition("/")[2]
            start_response("308 Permanent Redirect", [
                ("Location", target + (f"?{query}" if query else "")), ("Content-Length", "0")])
            return [b""]
        code, html = pages(path, query)
        body = html.encode()
        start_response(f"{code} {'OK' if code == 200 else 'Not Found'}", [
            ("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store")])
        return [body]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # one line per scrape would drown the operator's log


_ENDPOINT = _Endpoint()


def serve(port: int, conditions: Callable[[], Iterable[RingCondition]],
          active_queries: Callable[[], Mapping[str, int]], address: str = "0.0.0.0",
          pages: Pages | None = None,
          imbalances: Callable[[], Iterable[RingImbalance]] = lambda: ()) -> None:
    """Serve the metrics endpoint, and ``pages`` beside it (once per process; its threads never
    block kopf's loop)."""
    global _served
    _GAUGES.conditions, _GAUGES.active_queries = conditions, active_queries
    _GAUGES.imbalances = imbalances
    _ENDPOINT.pages = pages
    if _served is None:
        family, address = _get_best_family(address, port)  # an IPv6 address listens on v6

        class Server(ThreadingWSGIServer):
            address_family = family
        server = make_server(address, port, _ENDPOINT, Server, handler_class=_Quiet)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        _served = (address, port)


def forget_ring(namespace: str, ring: str) -> None:
    """A deleted ring's series go with it."""
    for metric in (RING_MEMBERS, RING_VERSION, RESHARDS, REBALANCES, SHARDS_MOVED,
                   CONFIGMAP_WRITES, RECONCILE_ERRORS):
        try:
            metric.remove(namespace, ring)
        except KeyError:
            pass
    for series in list(EVENTS._metrics):  # noqa: SLF001 - one series per type and reason
        if series[:2] == (namespace, ring):
            EVENTS.remove(*series)


def forget_unwatched(query: Query, watched: Iterable[Query]) -> None:
    """A stopped watcher's series go, unless another watcher (other credentials) has its labels."""
    if all(_source_labels(other) != _source_labels(query) for other in watched):
        forget_query(query)


def forget_query(query: Query) -> None:
    """A stopped watcher's series go with it (when no other query of that target runs)."""
    labels = _source_labels(query)
    for series in list(SOURCE_ERRORS._metrics):  # noqa: SLF001 - one series per reason
        if series[:3] == labels:
            SOURCE_ERRORS.remove(*series)
    consul = ((CONSUL_ERRORS, labels[1:]), (CONSUL_CHANGES, labels[1:])) \
        if query.kind == "consul" else ()
    for metric, values in ((SOURCE_CHANGES, labels), *consul):
        try:
            metric.remove(*values)
        except KeyError:
            pass
