"""A ShardRing's spec, parsed into typed settings. Pure: no I/O.

The CRD schema refuses most bad specs at apply time; what it cannot express is refused here with a
``SpecError`` whose message says what to fix (reported as Degraded / InvalidSpec).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from controller.core.ring import Algorithm, RingError, RingSpec

# <consul node>/<service ID>: Consul's unique key for an instance, valid for every registration.
DEFAULT_IDENTITY = "node/id"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class SpecError(ValueError):
    """The spec cannot be acted on; the message names the field and what to change."""


def parse_duration(text: str, field_name: str) -> float:
    """Go-style duration ("1m30s", "250ms", "0s") in seconds."""
    text = str(text).strip()
    if text == "0":
        return 0.0
    position, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise SpecError(f"{field_name}: {text!r} is not a duration like 10s, 1m30s or 500ms")
    return total


IN_CLUSTER = "in-cluster"  # the Kubernetes source's one connection: the operator's own API server


@dataclass(frozen=True)
class ServiceQuery:
    """What to ask Consul: one watcher serves every ring with an equal query."""

    kind: ClassVar[str] = "consul"
    connection: str
    service: str
    datacenter: str | None = None
    tags: tuple[str, ...] = ()
    node_meta: tuple[tuple[str, str], ...] = ()
    only_passing: bool = True
    filter: str | None = None  # Consul's filter expression, passed through as written

    @property
    def target(self) -> str:
        """What this source kind watches (metrics' ``query`` label)."""
        return self.service

    def members_found(self, count: int) -> str:
        return f"Consul reports {count} healthy instance(s) of {self.service!r}"

    def describe(self) -> str:
        """Which members, in a word (status.source, the SOURCE column)."""
        return f"consul:{self.service}"


@dataclass(frozen=True)
class EtcdQuery:
    """The keys under a prefix in an etcd (v3) cluster: one member per key."""

    kind: ClassVar[str] = "etcd"
    connection: str
    prefix: str
    filter: ClassVar[None] = None

    @property
    def target(self) -> str:
        return self.prefix

    def members_found(self, count: int) -> str:
        return f"etcd holds {count} member key(s) under {self.prefix!r}"

    def describe(self) -> str:
        return f"etcd:{self.prefix}"


@dataclass(frozen=True)
class ZooKeeperQuery:
    """The children of a ZooKeeper node: one member per child (ephemeral, as the notes do)."""

    kind: ClassVar[str] = "zookeeper"
    connection: str
    path: str
    address_field: str = "address"  # the JSON field holding host[:port] (the notes: frontend)
    filter: ClassVar[None] = None

    @property
    def target(self) -> str:
        return self.path

    def members_found(self, count: int) -> str:
        return f"ZooKeeper holds {count} member node(s) under {self.path!r}"

    def describe(self) -> str:
        return f"zookeeper:{self.path}"


@dataclass(frozen=True)
class KubernetesQuery:
    """The endpoints of a Service in the ring's own namespace, from its EndpointSlices."""

    kind: ClassVar[str] = "kubernetes"
    connection: ClassVar[str] = IN_CLUSTER
    filter: ClassVar[None] = None
    namespace: str
    service: str
    port: str | int | None = None  # a port's name or number; None: the Service's only port

    @property
    def target(self) -> str:
        return f"{self.namespace}/{self.service}"  # Services of one name in many namespaces

    def members_found(self, count: int) -> str:
        return f"Kubernetes lists {count} serving endpoint(s) of Service {self.service!r}"

    def describe(self) -> str:
        return f"kubernetes:{self.service}"


SourceQuery = ServiceQuery | EtcdQuery | ZooKeeperQuery | KubernetesQuery


@dataclass(frozen=True)
class TokenRef:
    secret: str
    key: str = "token"


@dataclass(frozen=True)
class CredentialsRef:
    """A Secret holding a username and a password (etcd's own authentication)."""

    secret: str
    username_key: str = "username"
    password_key: str = "password"


@dataclass(frozen=True)
class Stabilization:
    window: float = 10.0
    max_delay: float = 60.0
    min_members: int = 1
    max_member_loss_percent: int = 50


@dataclass(frozen=True)
class RingConfig:
    query: SourceQuery
    ring_spec: RingSpec  # the engine's parameters: shards, replication, algorithm
    configmap: str
    identity: str = DEFAULT_IDENTITY
    weight_from: str | None = None
    zone_from: str | None = None
    drain_from: str | None = None  # tag:<tag> | meta:<key> | field:<name>
    token: TokenRef | None = None  # Consul's ACL token
    credentials: CredentialsRef | None = None  # etcd's, or ZooKeeper's digest, user and password
    stabilization: Stabilization = field(default_factory=Stabilization)
    prometheus_relabel: bool = False
    suspend: bool = False
    handover_timeout: float = 60.0  # 0: planned moves complete at once (no make-before-break)


def _get(mapping: Mapping[str, Any] | None, key: str, default: Any = None) -> Any:
    if not mapping:
        return default
    value = mapping.get(key)
    return default if value is None else value


SOURCES = ("service", "etcd", "zookeeper", "kubernetes")  # spec fields naming a source


def parse_spec(name: str, spec: Mapping[str, Any], namespace: str = "") -> RingConfig:
    """``namespace``: the ring's (a Kubernetes source's Service is in it)."""
    named = [field_name for field_name in SOURCES if spec.get(field_name) is not None]
    if len(named) != 1:
        raise SpecError("set exactly one membership source: spec.service (a Consul service), "
                        "spec.etcd, spec.zookeeper or spec.kubernetes" +
                        (f" (found {' and '.join(named)})" if named else ""))
    members = _get(spec, "members", {})
    stabilization = _get(spec, "stabilization", {})
    algorithm = _get(spec, "algorithm", "balanced")
    try:
        ring = RingSpec(shards=int(_get(spec, "shards", 256)),
                        replication=int(_get(spec, "replicationFactor", 1)),
                        algorithm=Algorithm(algorithm),
                        virtual_nodes=int(_get(spec, "virtualNodes", 160)))
    except (RingError, ValueError) as error:
        raise SpecError(f"spec: {error}") from None
    window = parse_duration(_get(stabilization, "window", "10s"), "spec.stabilization.window")
    max_delay = parse_duration(_get(stabilization, "maxDelay", "60s"),
                               "spec.stabilization.maxDelay")
    if max_delay < window:
        raise SpecError("spec.stabilization.maxDelay must be at least spec.stabilization.window")
    query, token, credentials = _source(spec, named[0], namespace)
    return RingConfig(
        query=query,
        ring_spec=ring,
        configmap=_get(_get(spec, "configMap", {}), "name", f"{name}-ring"),
        identity=_get(members, "identity", DEFAULT_IDENTITY),
        weight_from=_get(members, "weightFrom"),
        zone_from=_get(members, "zoneFrom"),
        drain_from=_drain_rule(_get(members, "drainFrom")),
        token=token,
        credentials=credentials,
        stabilization=Stabilization(
            window=window, max_delay=max_delay,
            min_members=int(_get(stabilization, "minMembers", 1)),
            max_member_loss_percent=int(_get(stabilization, "maxMemberLossPercent", 50))),
        prometheus_relabel=bool(_get(_get(spec, "outputs", {}), "prometheusRelabel", False)),
        suspend=bool(_get(spec, "suspend", False)),
        handover_timeout=parse_duration(_get(_get(spec, "handover", {}), "timeout", "60s"),
                                        "spec.handover.timeout"),
    )


def _drain_rule(rule: str | None) -> str | None:
    if rule is None:
        return None
    kind, _, name = str(rule).partition(":")
    if kind not in ("tag", "meta", "field") or not name:
        raise SpecError(f"spec.members.drainFrom {rule!r} is not tag:<tag>, meta:<key> or "
                        f"field:<name>")
    return str(rule)


def _source(spec: Mapping[str, Any], which: str, namespace: str
            ) -> tuple[SourceQuery, TokenRef | None, CredentialsRef | None]:
    if which == "kubernetes":
        kubernetes = spec["kubernetes"]
        service = _get(kubernetes, "service")
        if not service or not isinstance(service, str):
            raise SpecError("spec.kubernetes.service is required: the name of a Service in the "
                            "ring's namespace")
        port = _get(kubernetes, "port")
        if port is not None and not isinstance(port, str | int) or port == "":
            raise SpecError("spec.kubernetes.port is a port's name or number")
        return KubernetesQuery(namespace=namespace, service=service, port=port), None, None
    if which == "zookeeper":
        zookeeper = spec["zookeeper"]
        path = str(_get(zookeeper, "path", ""))
        if not path.startswith("/") or len(path) < 2:
            raise SpecError("spec.zookeeper.path is required and starts with / (for example "
                            "/services/web)")
        ref = _get(zookeeper, "credentialsSecretRef")
        credentials = CredentialsRef(ref["name"], _get(ref, "usernameKey", "username"),
                                     _get(ref, "passwordKey", "password")) if ref else None
        return ZooKeeperQuery(connection=_get(zookeeper, "connection", "default"),
                              path=path.rstrip("/"),
                              address_field=_get(zookeeper, "addressField", "address")), \
            None, credentials
    if which == "etcd":
        etcd = spec["etcd"]
        prefix = _get(etcd, "prefix")
        if not prefix or not str(prefix).startswith("/"):
            raise SpecError("spec.etcd.prefix is required and starts with / (for example "
                            "/services/web/)")
        ref = _get(etcd, "credentialsSecretRef")
        credentials = CredentialsRef(ref["name"], _get(ref, "usernameKey", "username"),
                                     _get(ref, "passwordKey", "password")) if ref else None
        # A prefix is a directory: /svc/web would also match /svc/webadmin/x.
        prefix = str(prefix) if str(prefix).endswith("/") else f"{prefix}/"
        return EtcdQuery(connection=_get(etcd, "connection", "default"),
                         prefix=prefix), None, credentials
    service = spec["service"]
    if not _get(service, "name"):
        raise SpecError("spec.service.name is required")
    consul = _get(spec, "consul", {})
    token_ref = _get(consul, "tokenSecretRef")
    node_meta = _get(service, "nodeMeta", {})
    query = ServiceQuery(
        connection=_get(consul, "connection", "default"),
        service=service["name"],
        datacenter=_get(service, "datacenter"),
        tags=tuple(sorted(set(_get(service, "tags", [])))),
        node_meta=tuple(sorted((str(k), str(v)) for k, v in node_meta.items())),
        only_passing=bool(_get(service, "onlyPassing", True)),
        filter=_get(service, "filter") or None,
    )
    token = TokenRef(token_ref["name"], _get(token_ref, "key", "token")) if token_ref else None
    return query, token, None
