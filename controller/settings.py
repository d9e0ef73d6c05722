"""Operator settings: the allow-list of Consul connections and process options.

Consul endpoints are configured on the operator, never in a ShardRing, so a ring's author cannot
point the operator at an arbitrary URL. ``SHARDRING_CONSUL_CONNECTIONS`` names a YAML file::

    connections:
      default: {address: "consul.consul.svc:8501", scheme: https, caFile: /etc/consul/ca.pem}
      dc2: {address: "10.1.0.5:8500"}

Without it there is one connection, ``default``, from ``CONSUL_HTTP_ADDR`` (and ``CONSUL_CACERT``
for TLS), as the consul CLI reads them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class ConsulConnection:
    name: str
    host: str = "127.0.0.1"
    port: int = 8500
    scheme: str = "http"
    verify: bool | str = True  # True, or the path of a CA bundle

    @classmethod
    def from_address(cls, name: str, address: str, ca_file: str | None = None,
                     scheme: str | None = None) -> ConsulConnection:
        if "://" in address:
            scheme, address = address.split("://", 1)
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise SettingsError(f"Consul connection {name!r}: address {address!r} is not host:port")
        scheme = scheme or ("https" if ca_file else "http")
        if scheme not in ("http", "https"):
            raise SettingsError(f"Consul connection {name!r}: scheme must be http or https")
        return cls(name, host, int(port), scheme, ca_file or True)


@dataclass(frozen=True)
class OperatorConfig:
    """The operator's own configuration (kopf's settings are kopf.OperatorSettings)."""

    connections: dict[str, ConsulConnection] = field(default_factory=dict)
    metrics_port: int | None = None
    metrics_address: str = "0.0.0.0"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> OperatorConfig:
        env = dict(os.environ if environ is None else environ)
        path = env.get("SHARDRING_CONSUL_CONNECTIONS")
        if path:
            connections = load_connections(Path(path))
        else:
            connections = {"default": ConsulConnection.from_address(
                "default", env.get("CONSUL_HTTP_ADDR", "127.0.0.1:8500"), env.get("CONSUL_CACERT"),
                "https" if env.get("CONSUL_HTTP_SSL", "").lower() == "true" else None)}
        port = env.get("SHARDRING_METRICS_PORT")
        return cls(connections=connections, metrics_port=int(port) if port else None,
                   metrics_address=env.get("SHARDRING_METRICS_ADDRESS", "0.0.0.0"))


def load_connections(path: Path) -> dict[str, ConsulConnection]:
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise SettingsError(f"cannot read Consul connections from {path}: {error}") from None
    entries = document.get("connections") if isinstance(document, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise SettingsError(f"{path}: expected a 'connections' mapping of name -> {{address}}")
    connections = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or "address" not in entry:
            raise SettingsError(f"{path}: connection {name!r} needs an address")
        connections[str(name)] = ConsulConnection.from_address(
            str(name), str(entry["address"]), entry.get("caFile"), entry.get("scheme"))
    return connections
