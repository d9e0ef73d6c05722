"""Test data every suite shares: instances as a source reports them, and raw Consul health
entries (what /v1/health/service returns) for the tests of Consul's own decoding."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from controller.core.instance import PASSING, Health, Instance, Weights, frozen


def instance(name: str, address: str = "10.0.0.1", port: int = 9100, *, node: str = "",
             health: Health = PASSING, weight: float | None = None,
             labels: Mapping[str, str] | None = None,
             host_labels: Mapping[str, str] | None = None, tags: Iterable[str] = (),
             draining: bool = False) -> Instance:
    return Instance(f"instance {name!r}", name, node, address, port, health,
                    Weights(weight, weight) if weight is not None else None, frozen(labels),
                    frozen(host_labels), tuple(sorted(tags)), draining=draining)


def instances(count: int, port: int = 9100) -> tuple[Instance, ...]:
    """``count`` plain instances web-0, web-1, ... on distinct addresses."""
    return tuple(instance(f"web-{i}", f"10.0.1.{i}", port) for i in range(count))


def consul_entry(service_id: str, address: str = "10.0.0.1", port: int = 9100, *,
                 node: str = "n1", node_address: str = "192.168.0.1",
                 meta: Mapping[str, str] | None = None,
                 node_meta: Mapping[str, str] | None = None, tags: Iterable[str] = (),
                 weights: tuple[float, float] = (1, 1), status: str = PASSING,
                 service: str = "web") -> dict[str, Any]:
    """One entry of Consul's /v1/health/service, with one service check in ``status``."""
    return {"Node": {"Node": node, "Address": node_address, "Meta": dict(node_meta or {})},
            "Service": {"ID": service_id, "Service": service, "Address": address, "Port": port,
                        "Tags": list(tags), "Meta": dict(meta or {}),
                        "Weights": {"Passing": weights[0], "Warning": weights[1]}},
            "Checks": [{"CheckID": "serfHealth", "Status": PASSING},
                       {"CheckID": f"service:{service_id}", "Status": status}]}
