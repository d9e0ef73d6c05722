"""The operator's own configuration (kopf's settings are kopf.OperatorSettings), from its
environment: the connections file (``SHARDRING_CONSUL_CONNECTIONS``; without it one Consul
connection, ``default``, from ``CONSUL_HTTP_ADDR`` and ``CONSUL_CACERT`` as the consul CLI reads
them), the metrics endpoint and the limits (``SHARDRING_MAX_MEMBERS`` and the like)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from controller.core.limits import Access, Limits
from controller.core.spec import IN_CLUSTER
from controller.sources.connections import (
    ConsulConnection,
    EtcdConnection,
    ZooKeeperConnection,
    load_connections,
)


@dataclass(frozen=True)
class OperatorConfig:
    """The operator's own configuration (kopf's settings are kopf.OperatorSettings)."""

    connections: dict[str, ConsulConnection] = field(default_factory=dict)
    etcd: dict[str, EtcdConnection] = field(default_factory=dict)
    zookeeper: dict[str, ZooKeeperConnection] = field(default_factory=dict)
    metrics_port: int | None = None
    metrics_address: str = "0.0.0.0"
    ring_page: bool = True  # the read-only ring page on the metrics port
    limits: Limits = Limits()

    def access(self) -> dict[tuple[str, str], Access]:
        """Who may use each connection, by (source kind, connection name)."""
        return {**{("consul", name): c.access for name, c in self.connections.items()},
                **{("etcd", name): c.access for name, c in self.etcd.items()},
                **{("zookeeper", name): c.access for name, c in self.zookeeper.items()},
                # The operator's own API server: a ring reads its own namespace's Services.
                ("kubernetes", IN_CLUSTER): Access()}

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> OperatorConfig:
        env = dict(os.environ if environ is None else environ)
        path = env.get("SHARDRING_CONSUL_CONNECTIONS")
        etcd: dict[str, EtcdConnection] = {}
        zookeeper: dict[str, ZooKeeperConnection] = {}
        if path:
            connections, etcd, zookeeper = load_connections(Path(path))
        else:
            connections = {"default": ConsulConnection.from_address(
                "default", env.get("CONSUL_HTTP_ADDR", "127.0.0.1:8500"), env.get("CONSUL_CACERT"),
                "https" if env.get("CONSUL_HTTP_SSL", "").lower() == "true" else None)}
        port = env.get("SHARDRING_METRICS_PORT")
        return cls(connections=connections, etcd=etcd, zookeeper=zookeeper,
                   metrics_port=int(port) if port else None,
                   metrics_address=env.get("SHARDRING_METRICS_ADDRESS", "0.0.0.0"),
                   ring_page=env.get("SHARDRING_RING_PAGE", "true").lower()
                   not in ("false", "0", "no", "off"),
                   limits=Limits.from_env(env))
