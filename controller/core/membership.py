"""A source's instances -> ring members, per a ring's identity/weight/zone/drain rules. Pure.

Health follows Consul's rules (its DNS interface and load balancing), which every source's
instances carry: critical is never a member; warning is a member (sources that ask for passing
instances only never report one) and then weighs its warning weight.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from controller.core.instance import CRITICAL, WARNING, Instance
from controller.core.printable import shown
from controller.core.ring import Assignment, Member, RingSpec
from controller.core.ringfile import Endpoint
from controller.core.spec import DEFAULT_IDENTITY


class MembershipError(ValueError):
    """Instances cannot be turned into members as configured; the message says which and why."""


@dataclass(frozen=True)
class Membership:
    members: tuple[Member, ...]  # sorted by id, like the seed's sorted node list
    endpoints: Mapping[str, Endpoint]  # of members and draining members
    draining: tuple[str, ...] = ()  # draining instances' ids, sorted: listed, owning nothing
    # What the ring engine made of these members, by (spec, hash of the previous ring): rings
    # that read one snapshot with the same rules share this membership, and those with the
    # same spec and previous ring share one assignment (the engine is pure), computed once.
    # Not part of the value.
    # (Not an argument: a membership made from another never inherits its assignments.)
    planned: dict[tuple[RingSpec, str | None], Assignment] = field(
        default_factory=dict, init=False, compare=False, repr=False)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.members)


def _not_unicode(text: str | None) -> bool:
    """A lone surrogate (JSON's "\\ud800", an etcd key's bytes that are not UTF-8): no UTF-8 for
    it, so no hash, no ConfigMap, no reader takes it."""
    if text is None or text.isascii():
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _identity(instance: Instance, rule: str) -> str:
    if rule == "node/id":
        # Consul's own key for an instance: a service ID is unique only on its node (registered
        # without one, every node's instance has the service name as its ID).
        return instance.key if instance.name else ""
    if rule == "id":
        return instance.name
    if rule == "address":
        return instance.address
    if rule == "address:port":
        return f"{instance.address}:{instance.port}"
    if rule == "node":
        return instance.node
    if rule.startswith("meta:"):
        return instance.labels.get(rule[5:]) or ""
    raise MembershipError(f"unknown identity rule {rule!r}")


def _weight(instance: Instance, rule: str | None, identity: str) -> float:
    if rule is None:
        return 1.0
    raw: float | str | None
    if rule == "weights":
        weights = instance.weights
        raw = 1 if weights is None else \
            weights.warning if instance.health == WARNING else weights.passing
    else:
        raw = instance.labels.get(rule[5:])
        if raw is None:
            raise MembershipError(f"instance {shown(identity)} has no service meta "
                                  f"{shown(rule[5:])} for spec.members.weightFrom")
    # A number as people write one: Python's float() also takes "1_000", "inf" and other
    # scripts' digits.
    if isinstance(raw, str) and not _NUMBER.fullmatch(raw.strip()):
        raise MembershipError(f"instance {shown(identity)}: weight {shown(raw)} from {rule} is "
                              f"not a number")
    try:
        weight = float(raw)
    except (OverflowError, TypeError, ValueError):  # (an integer too large for a float)
        raise MembershipError(f"instance {shown(identity)}: weight {shown(raw)} from "
                              f"{rule} is not a number") from None
    if not math.isfinite(weight) or not 0 < weight <= MAX_WEIGHT:
        raise MembershipError(f"instance {shown(identity)}: weight {shown(raw)} from "
                              f"{rule} must be > 0 and at most {MAX_WEIGHT:.0e}")
    return weight


_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
MAX_WEIGHT = 1e15  # (a whole number that large is still exact, and ring.json writes it so)
# The longest member id: the status lists up to ten of them (lastChange, convergence), and
# ring.json each; a 200,000-character id made a status too large to write.
MAX_ID = 1024


def _zone(instance: Instance, rule: str | None) -> str | None:
    if rule is None:
        return None
    kind, key = rule.split(":", 1)
    labels = instance.host_labels if kind == "node-meta" else instance.labels
    return labels.get(key) or None


def _is_member(instance: Instance, weight_from: str | None) -> bool:
    """Critical instances never are; an instance in warning whose warning weight is 0 takes no
    load while it warns (Consul's DNS leaves such an instance out too)."""
    if instance.health == CRITICAL:
        return False
    if instance.health == WARNING and weight_from == "weights":
        return instance.weights is None or instance.weights.warning != 0
    return True


_TRUE = {"true", "1", "yes", "on", "draining"}


def is_draining(instance: Instance, rule: str | None) -> bool:
    """Whether the instance is draining: its source says so, or it says so where
    ``spec.members.drainFrom`` looks (a tag, a label, a field of a registered document)."""
    if instance.draining:
        return True
    if rule is None:
        return False
    kind, _, name = rule.partition(":")
    if kind == "tag":
        return name in instance.tags
    value = (instance.labels if kind == "meta" else instance.fields).get(name)
    return value.strip().lower() in _TRUE if value is not None else False


def members_from(instances: Iterable[Instance], identity: str = DEFAULT_IDENTITY,
                 weight_from: str | None = None, zone_from: str | None = None,
                 drain_from: str | None = None) -> Membership:
    """Members of a ring from its source's instances. Draining instances are listed apart: they
    own no shard."""
    draining: list[str] = []
    members: dict[str, Member] = {}
    endpoints: dict[str, Endpoint] = {}
    seen: dict[str, Instance] = {}
    for instance in instances:
        if not _is_member(instance, weight_from):
            continue  # (a critical instance's registration is not read: it is no member)
        if instance.invalid:
            raise MembershipError(f"{instance.origin}: {instance.invalid}")
        member_id = _identity(instance, identity)
        if not member_id:
            raise MembershipError(f"instance {instance.origin} has no value for "
                                  f"identity {identity!r}")
        if member_id in members or member_id in draining:
            raise MembershipError(
                f"two instances share identity {shown(member_id)} ({seen[member_id].origin} "
                f"and {instance.origin}); choose a more specific spec.members.identity "
                f"({DEFAULT_IDENTITY!r} is unique for every Consul instance)")
        if len(member_id) > MAX_ID:
            raise MembershipError(f"instance {instance.origin}: its id ({shown(member_id)}) is "
                                  f"{len(member_id)} characters long, more than {MAX_ID}")
        zone = _zone(instance, zone_from)
        if _not_unicode(member_id) or _not_unicode(zone) or _not_unicode(instance.address):
            raise MembershipError(f"instance {instance.origin}: its id, zone or address is not "
                                  f"UTF-8 text (bytes that are not, or a lone surrogate escape)")
        seen[member_id] = instance
        endpoints[member_id] = Endpoint(instance.address, instance.port)
        if is_draining(instance, drain_from):
            draining.append(member_id)
            continue
        members[member_id] = Member(member_id, _weight(instance, weight_from, member_id), zone)
    ordered = tuple(members[k] for k in sorted(members))
    return Membership(ordered, endpoints, tuple(sorted(draining)))
