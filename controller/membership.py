"""Consul health entries -> ring members, per a ring's identity/weight/zone rules. Pure: no I/O.

Health follows Consul's own rules (its DNS interface and load balancing): an instance's status is
the worst of its node's and its service's checks; critical (maintenance mode is a critical check)
is never a member, warning is a member only when the ring does not ask for passing instances only,
and then weighs ``Weights.Warning``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .ring import Member
from .ringfile import Endpoint
from .spec import DEFAULT_IDENTITY


class MembershipError(ValueError):
    """Instances cannot be turned into members as configured; the message says which and why."""


@dataclass(frozen=True)
class Membership:
    members: tuple[Member, ...]  # sorted by id, like the seed's sorted node list
    endpoints: Mapping[str, Endpoint]  # of members and draining members
    draining: tuple[str, ...] = ()  # draining instances' ids, sorted: listed, owning nothing

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.members)


PASSING, WARNING, CRITICAL = "passing", "warning", "critical"
_SEVERITY = {PASSING: 0, WARNING: 1, CRITICAL: 2}


def health_status(checks: Iterable[Mapping[str, Any]] | None) -> str:
    """The aggregated status of a health entry's checks: the worst one (an unknown status counts
    as critical, as Consul does); no checks at all is passing."""
    worst = PASSING
    for check in checks or ():
        status = str(check.get("Status") or CRITICAL)
        if _SEVERITY.get(status, 2) > _SEVERITY[worst]:
            worst = status if status in _SEVERITY else CRITICAL
    return worst


def _service_address(entry: Mapping[str, Any]) -> str:
    service = entry.get("Service") or {}
    return service.get("Address") or (entry.get("Node") or {}).get("Address") or ""


def _identity(entry: Mapping[str, Any], rule: str) -> str:
    service = entry.get("Service") or {}
    if rule == "node/id":
        # Consul's own key for an instance: a service ID is unique only on its node (registered
        # without one, every node's instance has the service name as its ID).
        node, service_id = (entry.get("Node") or {}).get("Node"), service.get("ID")
        if not node:  # etcd keys and ZooKeeper nodes are unique by themselves
            return str(service_id or "") if entry.get("Source") else ""
        return f"{node}/{service_id}" if service_id else ""
    if rule == "id":
        return str(service.get("ID") or "")
    if rule == "address":
        return _service_address(entry)
    if rule == "address:port":
        return f"{_service_address(entry)}:{service.get('Port', 0)}"
    if rule == "node":
        return str((entry.get("Node") or {}).get("Node") or "")
    if rule.startswith("meta:"):
        return str((service.get("Meta") or {}).get(rule[5:]) or "")
    raise MembershipError(f"unknown identity rule {rule!r}")


def _weight(entry: Mapping[str, Any], rule: str | None, identity: str) -> float:
    if rule is None:
        return 1.0
    service = entry.get("Service") or {}
    if rule == "weights":
        which = "Warning" if entry.get("Status") == WARNING else "Passing"
        raw: Any = (service.get("Weights") or {}).get(which, 1)
    else:
        raw = (service.get("Meta") or {}).get(rule[5:])
        if raw is None:
            raise MembershipError(f"instance {identity!r} has no service meta {rule[5:]!r} "
                                  f"for spec.members.weightFrom")
    try:
        weight = float(raw)
    except (TypeError, ValueError):
        raise MembershipError(f"instance {identity!r}: weight {raw!r} from {rule} is not a "
                              f"number") from None
    if not math.isfinite(weight) or weight <= 0:
        raise MembershipError(f"instance {identity!r}: weight {raw!r} from {rule} must be > 0")
    return weight


def _zone(entry: Mapping[str, Any], rule: str | None) -> str | None:
    if rule is None:
        return None
    kind, key = rule.split(":", 1)
    source = (entry.get("Node") or {}).get("Meta") if kind == "node-meta" else \
        (entry.get("Service") or {}).get("Meta")
    value = (source or {}).get(key)
    return str(value) if value else None


def _is_member(entry: Mapping[str, Any], weight_from: str | None) -> bool:
    """Critical instances never are; an instance in warning whose ``Weights.Warning`` is 0 takes
    no load while it warns (Consul's DNS leaves such an instance out too)."""
    status = entry.get("Status", PASSING)
    if status == CRITICAL:
        return False
    if status == WARNING and weight_from == "weights":
        weights = (entry.get("Service") or {}).get("Weights") or {}
        return bool(weights.get("Warning", 1) != 0)
    return True


def describe_instance(entry: Mapping[str, Any]) -> str:
    """How an instance is named in messages: Consul's own key, node and service ID (or the
    etcd key a registration came from)."""
    if entry.get("Source"):
        return str(entry["Source"])
    node = (entry.get("Node") or {}).get("Node")
    return f"{(entry.get('Service') or {}).get('ID')!r} on node {node!r}"


_TRUE = {"true", "1", "yes", "on", "draining"}


def is_draining(entry: Mapping[str, Any], rule: str | None) -> bool:
    """Whether the instance says it is draining, where ``spec.members.drainFrom`` says to look:
    a Consul tag, a meta value (Consul service meta; etcd and ZooKeeper ``metadata``), or a
    top-level field of an etcd or ZooKeeper JSON value."""
    if rule is None:
        return False
    kind, _, name = rule.partition(":")
    service = entry.get("Service") or {}
    if kind == "tag":
        return name in (service.get("Tags") or ())
    value = (service.get("Meta") or {}).get(name) if kind == "meta" else \
        (entry.get("Fields") or {}).get(name)
    return str(value).strip().lower() in _TRUE if value is not None else False


def members_from(entries: Iterable[Mapping[str, Any]], identity: str = DEFAULT_IDENTITY,
                 weight_from: str | None = None, zone_from: str | None = None,
                 drain_from: str | None = None) -> Membership:
    """Members from health entries whose ``Status`` is the aggregated one (``health_status``;
    passing when absent). Draining instances are listed apart: they own no shard."""
    draining: list[str] = []
    members: dict[str, Member] = {}
    endpoints: dict[str, Endpoint] = {}
    seen: dict[str, Mapping[str, Any]] = {}
    for entry in entries:
        if entry.get("Invalid"):
            raise MembershipError(f"{describe_instance(entry)}: {entry['Invalid']}")
        if not _is_member(entry, weight_from):
            continue
        member_id = _identity(entry, identity)
        service = entry.get("Service") or {}
        if not member_id:
            raise MembershipError(f"instance {describe_instance(entry)} has no value for "
                                  f"identity {identity!r}")
        if member_id in members or member_id in draining:
            raise MembershipError(
                f"two instances share identity {member_id!r} ({describe_instance(seen[member_id])} "
                f"and {describe_instance(entry)}); choose a more specific spec.members.identity "
                f"({DEFAULT_IDENTITY!r} is unique for every Consul instance)")
        seen[member_id] = entry
        endpoints[member_id] = Endpoint(_service_address(entry), int(service.get("Port") or 0))
        if is_draining(entry, drain_from):
            draining.append(member_id)
            continue
        members[member_id] = Member(member_id, _weight(entry, weight_from, member_id),
                                    _zone(entry, zone_from))
    ordered = tuple(members[k] for k in sorted(members))
    return Membership(ordered, endpoints, tuple(sorted(draining)))


def registration_entry(source: str, member_id: str, value: bytes,
                       address_field: str = "address") -> dict[str, Any]:
    """An instance registered as a value (an etcd key's, a ZooKeeper node's) in the shape
    Consul's entries have: ``host:port``, or JSON with the address (``host`` or ``host:port``,
    in ``address_field``), ``port``, ``weight``, ``zone`` and string ``metadata``. A bad value
    becomes an entry marked ``Invalid`` (the ring says which key and why), never an exception:
    whatever a registrant wrote is that key's problem, not its source's (a JSON value nested a
    few thousand deep raises RecursionError, not ValueError)."""
    entry: dict[str, Any] = {"Node": {}, "Service": {"ID": member_id}, "Status": PASSING,
                             "Source": source}
    try:
        return _registration_entry(entry, value, address_field)
    except Exception as error:  # noqa: BLE001 - see above
        return {**entry, "Service": {"ID": member_id},
                "Invalid": f"the value cannot be read ({type(error).__name__})"}


def _registration_entry(entry: dict[str, Any], value: bytes,
                        address_field: str) -> dict[str, Any]:
    try:
        text = value.decode()
    except UnicodeDecodeError:
        return {**entry, "Invalid": "the value is not UTF-8 text"}
    document = _json_document(text.strip())
    if document is _NOT_JSON:
        return {**entry, "Invalid": "the value starts like JSON but is not valid JSON"}
    if document is None:
        host, port = _host_port(text.strip())
        if not host or port is None:
            return {**entry, "Invalid": "the value is neither JSON nor host:port"}
        entry["Service"].update(Address=host, Port=port)
        return entry
    problem = _registration_problem(document, address_field)
    if problem:
        return {**entry, "Invalid": problem}
    host, port = _host_port(str(document[address_field]))
    service = entry["Service"]
    service.update(Address=host, Port=int(document.get("port") or port or 0))
    if document.get("weight") is not None:
        service["Weights"] = {"Passing": document["weight"], "Warning": document["weight"]}
    if document.get("metadata"):
        service["Meta"] = {str(k): str(v) for k, v in document["metadata"].items()}
    if document.get("zone"):
        entry["Node"] = {"Meta": {"zone": str(document["zone"])}}
    fields = {str(k): str(v).lower() if isinstance(v, bool) else str(v)
              for k, v in document.items() if isinstance(v, str | int | float | bool)}
    if fields:
        entry["Fields"] = fields  # for spec.members.drainFrom: field:<name>
    return entry


_NOT_JSON = object()


def _json_document(text: str) -> Any:
    """The JSON in a value, None for a plain one, _NOT_JSON for broken JSON. ``[fd00::1]:80``
    starts like a JSON list but is an IPv6 host:port."""
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            return _NOT_JSON
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            return None
    return None


def _registration_problem(document: Any, address_field: str) -> str | None:
    if not isinstance(document, dict):
        return "the JSON value is not an object"
    if not isinstance(document.get(address_field), str) or not document[address_field]:
        return f"the JSON value has no \"{address_field}\""
    port = document.get("port")
    if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
        return f"port {port!r} is not a port number"
    weight = document.get("weight")
    if weight is not None and (isinstance(weight, bool) or not isinstance(weight, int | float)):
        return f"weight {weight!r} is not a number"
    if document.get("metadata") is not None and not isinstance(document["metadata"], dict):
        return "metadata is not an object"
    return None


def _host_port(text: str) -> tuple[str, int | None]:
    """``host:port`` or ``[v6]:port`` -> (host, port); a bare host has no port (None)."""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or (":" in host and not host.startswith("[")):
        return text, None
    return host.strip("[]"), int(port)
