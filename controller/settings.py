"""Operator settings: the allow-list of Consul connections and process options.

Consul endpoints are configured on the operator, never in a ShardRing, so a ring's author cannot
point the operator at an arbitrary URL. ``SHARDRING_CONSUL_CONNECTIONS`` names a YAML file::

    connections:
      default: {address: "consul.consul.svc:8501", scheme: https, caFile: /etc/consul/ca.pem}
      payments:
        address: "consul-payments.consul.svc:8501"
        caFile: /etc/consul/ca.pem
        namespaces: [payments, "payments-*"]   # who may use it (default: every namespace)
        datacenters: [dc1]                     # which datacenters rings may name (default: any)
        requireToken: true                     # refuse rings without spec.consul.tokenSecretRef

Without it there is one connection, ``default``, from ``CONSUL_HTTP_ADDR`` (and ``CONSUL_CACERT``
for TLS), as the consul CLI reads them.

Limits bound what one ring may cost the operator (``SHARDRING_MAX_MEMBERS`` and the like, see
``Limits``); a ring over a limit is Degraded and costs nothing more.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Access:
    """Who may use a connection, and how."""

    namespaces: tuple[str, ...] | None = None  # names or shell patterns; None: every namespace
    datacenters: tuple[str, ...] | None = None  # None: any; a ring naming none uses the agent's
    require_token: bool = False  # refuse rings that would query anonymously

    def serves(self, namespace: str) -> bool:
        return self.namespaces is None or any(fnmatchcase(namespace, p) for p in self.namespaces)

    def allows_datacenter(self, datacenter: str | None) -> bool:
        return datacenter is None or self.datacenters is None or datacenter in self.datacenters


@dataclass(frozen=True)
class ConsulConnection:
    name: str
    host: str = "127.0.0.1"
    port: int = 8500
    scheme: str = "http"
    verify: bool | str = True  # True, or the path of a CA bundle
    access: Access = Access()

    @classmethod
    def from_address(cls, name: str, address: str, ca_file: str | None = None,
                     scheme: str | None = None, access: Access = Access()) -> ConsulConnection:
        if "://" in address:
            scheme, address = address.split("://", 1)
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise SettingsError(f"Consul connection {name!r}: address {address!r} is not host:port")
        scheme = scheme or ("https" if ca_file else "http")
        if scheme not in ("http", "https"):
            raise SettingsError(f"Consul connection {name!r}: scheme must be http or https")
        return cls(name, host, int(port), scheme, ca_file or True, access)


@dataclass(frozen=True)
class EtcdConnection:
    """An etcd v3 cluster, spoken to through its JSON gateway (``/v3/...`` on the client port)."""

    name: str
    endpoints: tuple[str, ...]  # http(s)://host:port, tried in turn
    ca_file: str | None = None
    cert_file: str | None = None  # a client certificate (and its key), when etcd asks for one
    key_file: str | None = None
    access: Access = Access()


@dataclass(frozen=True)
class ZooKeeperConnection:
    name: str
    hosts: tuple[str, ...]  # host:port of each server of the ensemble
    chroot: str | None = None
    access: Access = Access()


@dataclass(frozen=True)
class Limits:
    """What one ring may cost, checked before the work is done. The defaults keep an operator
    with a 512 Mi memory limit well inside it (bench/results/limits.md)."""

    # Instances in one ring's membership query.
    max_members: int = 10_000
    # The ring engine's work, by algorithm (see ``ring_work``): 32 M is ~0.5 s of rendezvous, or
    # 4 M virtual-node points (~150 MB) for consistent.
    max_ring_work: int = 32_000_000
    # One membership reply, read no further than this (a 10 000-instance Consul reply is ~N MB).
    max_reply_bytes: int = 64 << 20
    # Seconds between two versions of one ring, whatever its window (membership churn), longer
    # in proportion for a ConfigMap over 100 KiB (planner.BYTES_PER_PUBLISH_INTERVAL); spec
    # changes apply at once.
    min_publish_interval: float = 0.1

    ENV = {"max_members": "SHARDRING_MAX_MEMBERS", "max_ring_work": "SHARDRING_MAX_RING_WORK",
           "max_reply_bytes": "SHARDRING_MAX_REPLY_BYTES",
           "min_publish_interval": "SHARDRING_MIN_PUBLISH_INTERVAL"}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Limits:
        values: dict[str, float | int] = {}
        for attribute, variable in cls.ENV.items():
            text = env.get(variable)
            if not text:
                continue
            kind = float if attribute == "min_publish_interval" else int
            try:
                value = kind(text)
            except ValueError:
                raise SettingsError(f"{variable}={text!r} is not a number") from None
            if value < 0:
                raise SettingsError(f"{variable} must not be negative")
            values[attribute] = value
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class OperatorConfig:
    """The operator's own configuration (kopf's settings are kopf.OperatorSettings)."""

    connections: dict[str, ConsulConnection] = field(default_factory=dict)
    etcd: dict[str, EtcdConnection] = field(default_factory=dict)
    zookeeper: dict[str, ZooKeeperConnection] = field(default_factory=dict)
    metrics_port: int | None = None
    metrics_address: str = "0.0.0.0"
    limits: Limits = Limits()

    def access(self) -> dict[tuple[str, str], Access]:
        """Who may use each connection, by (source kind, connection name)."""
        return {**{("consul", name): c.access for name, c in self.connections.items()},
                **{("etcd", name): c.access for name, c in self.etcd.items()},
                **{("zookeeper", name): c.access for name, c in self.zookeeper.items()}}

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
                   limits=Limits.from_env(env))


def load_connections(path: Path) -> tuple[dict[str, ConsulConnection], dict[str, EtcdConnection],
                                          dict[str, ZooKeeperConnection]]:
    """Consul connections (``connections:``), etcd clusters (``etcd:``) and ZooKeeper ensembles
    (``zookeeper:``) rings may use."""
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise SettingsError(f"cannot read Consul connections from {path}: {error}") from None
    entries = document.get("connections", {}) if isinstance(document, dict) else None
    etcd_entries = document.get("etcd", {}) if isinstance(document, dict) else None
    zk_entries = document.get("zookeeper", {}) if isinstance(document, dict) else None
    if not all(isinstance(e, dict) for e in (entries, etcd_entries, zk_entries)) or \
            not (entries or etcd_entries or zk_entries):
        raise SettingsError(f"{path}: expected a 'connections' mapping of name -> {{address}} "
                            f"(Consul), an 'etcd' one of name -> {{endpoints}} and/or a "
                            f"'zookeeper' one of name -> {{hosts}}")
    assert isinstance(entries, dict) and isinstance(etcd_entries, dict) and \
        isinstance(zk_entries, dict)
    return (_consul_connections(path, entries), _etcd_connections(path, etcd_entries),
            _zookeeper_connections(path, zk_entries))


_ZOOKEEPER_FIELDS = {"hosts", "chroot", "namespaces"}


def _check_fields(path: Path, what: str, name: Any, entry: Any, allowed: set[str]) -> None:
    """A connection is a mapping of known fields: a misspelt restriction must not silently leave
    a connection open to everyone."""
    if not isinstance(entry, dict):
        raise SettingsError(f"{path}: {what} {name!r} must be a mapping")
    unknown = set(entry) - allowed
    if unknown:
        raise SettingsError(f"{path}: {what} {name!r}: unknown field(s) "
                            f"{', '.join(sorted(map(str, unknown)))}")


def _zookeeper_connections(path: Path, entries: dict[str, Any]
                           ) -> dict[str, ZooKeeperConnection]:
    ensembles = {}
    for name, entry in entries.items():
        _check_fields(path, "zookeeper connection", name, entry, _ZOOKEEPER_FIELDS)
        hosts = _names(path, name, entry, "hosts")
        if not hosts:
            raise SettingsError(f"{path}: zookeeper connection {name!r} needs hosts")
        chroot = entry.get("chroot")
        if chroot is not None and (not isinstance(chroot, str) or not chroot.startswith("/")):
            raise SettingsError(f"{path}: zookeeper connection {name!r}: chroot starts with /")
        ensembles[str(name)] = ZooKeeperConnection(
            str(name), hosts, chroot, Access(_names(path, name, entry, "namespaces")))
    return ensembles


def _consul_connections(path: Path, entries: dict[str, Any]) -> dict[str, ConsulConnection]:
    connections = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or "address" not in entry:
            raise SettingsError(f"{path}: connection {name!r} needs an address")
        _check_fields(path, "connection", name, entry, _CONNECTION_FIELDS)
        access = Access(_names(path, name, entry, "namespaces"),
                        _names(path, name, entry, "datacenters"),
                        _flag(path, name, entry, "requireToken"))
        connections[str(name)] = ConsulConnection.from_address(
            str(name), str(entry["address"]), entry.get("caFile"), entry.get("scheme"), access)
    return connections


_CONNECTION_FIELDS = {"address", "scheme", "caFile", "namespaces", "datacenters", "requireToken"}
_ETCD_FIELDS = {"endpoints", "caFile", "certFile", "keyFile", "namespaces", "requireCredentials"}


def _etcd_connections(path: Path, entries: dict[str, Any]) -> dict[str, EtcdConnection]:
    clusters = {}
    for name, entry in entries.items():
        _check_fields(path, "etcd connection", name, entry, _ETCD_FIELDS)
        endpoints = _names(path, name, entry, "endpoints")
        if not endpoints:
            raise SettingsError(f"{path}: etcd connection {name!r} needs endpoints")
        secure = bool(entry.get("caFile") or entry.get("certFile"))
        urls = tuple((e if "://" in e else f"{'https' if secure else 'http'}://{e}").rstrip("/")
                     for e in endpoints)
        if bool(entry.get("certFile")) != bool(entry.get("keyFile")):
            raise SettingsError(f"{path}: etcd connection {name!r}: certFile and keyFile go "
                                f"together")
        access = Access(_names(path, name, entry, "namespaces"), None,
                        _flag(path, name, entry, "requireCredentials"))
        clusters[str(name)] = EtcdConnection(str(name), urls, entry.get("caFile"),
                                             entry.get("certFile"), entry.get("keyFile"), access)
    return clusters


def _names(path: Path, name: object, entry: dict[str, object], key: str) -> tuple[str, ...] | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SettingsError(f"{path}: connection {name!r}: {key} must be a list of names")
    return tuple(value)


def _flag(path: Path, name: object, entry: dict[str, object], key: str) -> bool:
    value = entry.get(key, False)
    if not isinstance(value, bool):
        raise SettingsError(f"{path}: connection {name!r}: {key} must be true or false")
    return value
