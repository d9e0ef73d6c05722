"""The agent's own metrics (prometheus-client), served on --metrics-port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)
APPLIED_VERSION = Gauge("shardring_agent_applied_ring_version",
                        "The ring version whose files this agent last swapped in.",
                        registry=REGISTRY)
APPLY_SECONDS = Histogram(
    "shardring_agent_apply_seconds",
    "From a new ConfigMap version reaching the agent to its files swapped in and the reload done.",
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
RELOADS = Counter("shardring_agent_reloads_total", "Reload actions run.", registry=REGISTRY)
RELOAD_FAILURES = Counter("shardring_agent_reload_failures_total", "Reload actions that failed.",
                          registry=REGISTRY)
RELOAD_PENDING = Gauge("shardring_agent_reload_pending",
                       "1 while a reload is failing and being retried.", registry=REGISTRY)
API_REACHABLE = Gauge("shardring_agent_api_reachable",
                      "1 while the agent's watch of the ConfigMap is connected.",
                      registry=REGISTRY)
REJECTED = Counter("shardring_agent_rejected_versions_total",
                   "ConfigMap versions not applied (no or unreadable ring.json, an invalid "
                   "rendered configuration).", registry=REGISTRY)


def serve(port: int, address: str = "0.0.0.0") -> None:
    start_http_server(port, addr=address, registry=REGISTRY)
