"""One registered instance, as every membership source reports it. Pure: types only.

Each source (Consul, etcd, ZooKeeper, Kubernetes) turns what its registry holds into these
records; membership, identity, weights, zones and draining are computed from them alone, so no
source's field names reach the core."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

Health = Literal["passing", "warning", "critical"]
PASSING: Health = "passing"
WARNING: Health = "warning"
CRITICAL: Health = "critical"

NOTHING: Mapping[str, str] = MappingProxyType({})  # shared: most instances have no labels


def _nothing() -> Mapping[str, str]:
    return NOTHING


@dataclass(frozen=True, slots=True)
class Weights:
    """The weight an instance registered, while passing and while in warning (Consul's
    ``Weights``; a registration's single ``weight`` is both). As registered: checked when a
    ring uses them (``spec.members.weightFrom: weights``)."""

    passing: float
    warning: float


@dataclass(frozen=True, slots=True)
class Instance:
    origin: str  # how messages name it: "'web-1' on node 'n1'", "etcd key '/svc/web/a'"
    name: str  # the source's own name for it: a Consul service ID, an etcd key below the prefix
    # The host it runs on, where the source knows it (Consul's node). Instances without one are
    # unique by name alone.
    node: str = ""
    address: str = ""
    port: int = 0
    health: Health = PASSING
    weights: Weights | None = None
    # The instance's own (Consul service meta, a registration's metadata).
    labels: Mapping[str, str] = field(default_factory=_nothing)
    # Of the host it runs on (Consul node meta, a registration's zone).
    host_labels: Mapping[str, str] = field(default_factory=_nothing)
    tags: tuple[str, ...] = ()
    # The top-level scalar fields of a registered JSON document, as text (drainFrom: field:x).
    fields: Mapping[str, str] = field(default_factory=_nothing)
    draining: bool = False  # the source itself says so (a terminating Kubernetes endpoint)
    # Why the registration cannot be read; the ring names ``origin`` and this, and keeps its
    # last published version until it is fixed.
    invalid: str | None = None

    @property
    def key(self) -> str:
        """Unique within one source's reply: node and name, or the name where there is no node."""
        return f"{self.node}/{self.name}" if self.node else self.name


def frozen(mapping: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping)) if mapping else NOTHING
