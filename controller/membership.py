"""Consul health entries -> ring members, per a ring's identity/weight/zone rules. Pure: no I/O."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .ring import Member
from .ringfile import Endpoint


class MembershipError(ValueError):
    """Instances cannot be turned into members as configured; the message says which and why."""


@dataclass(frozen=True)
class Membership:
    members: tuple[Member, ...]  # sorted by id, like the seed's sorted node list
    endpoints: Mapping[str, Endpoint]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.members)


def _service_address(entry: Mapping[str, Any]) -> str:
    service = entry.get("Service") or {}
    return service.get("Address") or (entry.get("Node") or {}).get("Address") or ""


def _identity(entry: Mapping[str, Any], rule: str) -> str:
    service = entry.get("Service") or {}
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
        raw: Any = (service.get("Weights") or {}).get("Passing", 1)
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


def members_from(entries: Iterable[Mapping[str, Any]], identity: str = "id",
                 weight_from: str | None = None, zone_from: str | None = None) -> Membership:
    members: dict[str, Member] = {}
    endpoints: dict[str, Endpoint] = {}
    for entry in entries:
        member_id = _identity(entry, identity)
        service = entry.get("Service") or {}
        if not member_id:
            raise MembershipError(f"instance {service.get('ID')!r} has no value for identity "
                                  f"{identity!r}")
        if member_id in members:
            raise MembershipError(f"two instances share identity {member_id!r}; choose a more "
                                  f"specific spec.members.identity")
        members[member_id] = Member(member_id, _weight(entry, weight_from, member_id),
                                    _zone(entry, zone_from))
        endpoints[member_id] = Endpoint(_service_address(entry), int(service.get("Port") or 0))
    ordered = tuple(members[k] for k in sorted(members))
    return Membership(ordered, endpoints)
