"""The allow-list of source connections: Consul agents, etcd clusters, ZooKeeper ensembles.

Endpoints are configured on the operator, never in a ShardRing, so a ring's author cannot point
the operator at an arbitrary URL. ``SHARDRING_CONSUL_CONNECTIONS`` names a YAML file::

    connections:
      default: {address: "consul.consul.svc:8501", scheme: https, caFile: /etc/consul/ca.pem}
      payments:
        address: "consul-payments.consul.svc:8501"
        caFile: /etc/consul/ca.pem
        namespaces: [payments, "payments-*"]   # who may use it (default: every namespace)
        datacenters: [dc1]                     # which datacenters rings may name (default: any)
        requireToken: true                     # refuse rings without spec.consul.tokenSecretRef
    etcd:
      default: {endpoints: ["https://etcd-0:2379"], caFile: /etc/etcd/ca.pem}
    zookeeper:
      default: {hosts: ["zk-0:2181", "zk-1:2181"]}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controller.core.limits import Access, SettingsError


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
        if ca_file and scheme == "http":  # (the CA went unused: no TLS, said nowhere)
            raise SettingsError(f"Consul connection {name!r}: caFile is set but scheme is http; "
                                f"use https (implied by caFile), or drop caFile")
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
