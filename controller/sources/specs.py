"""Every source kind the operator follows, as the spec names them: what the planner reads a
ShardRing's spec with. Its order is the order the spec's error message lists them in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.core import spec as spec_module
from controller.core.spec import RingConfig, SourceSpec
from controller.core.views import RingObject
from controller.sources.consul.query import SPEC as CONSUL
from controller.sources.etcd.query import SPEC as ETCD
from controller.sources.kubernetes.query import SPEC as KUBERNETES
from controller.sources.zookeeper.query import SPEC as ZOOKEEPER

SOURCES: tuple[SourceSpec, ...] = (CONSUL, ETCD, ZOOKEEPER, KUBERNETES)


def parse_spec(name: str, spec: Mapping[str, Any], namespace: str = "") -> RingConfig:
    """A ShardRing's spec read with every source kind (``namespace``: the ring's)."""
    return spec_module.parse_spec(name, spec, namespace, SOURCES)


def read_spec(ring: RingObject) -> RingConfig:
    """A ring's spec as a config (the planner's ``read``)."""
    return parse_spec(ring.name, ring.spec, ring.namespace)
