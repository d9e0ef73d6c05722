"""Which services changed, from Consul's listing of the checks that are not passing. Pure.

A hub asks Consul for every check that is not passing, in one blocking query for the whole
datacenter (``/v1/health/state/any`` filtered on ``Status != "passing"``): small in a healthy
datacenter, and it changes whenever any check changes state. Comparing two listings names the
services whose instances' health moved (a service's own checks) and the nodes whose health moved
(node checks, such as serfHealth, which count for every instance on the node).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# A service's check: its node, service ID, check ID and status.
Check = tuple[str, str, str, str]


@dataclass(frozen=True)
class Unhealthy:
    """The checks that are not passing, by service name, and the node checks, by node."""

    services: Mapping[str, frozenset[Check]]
    nodes: Mapping[str, frozenset[tuple[str, str]]]  # node -> (check ID, status)


def unhealthy(checks: Iterable[Mapping[str, Any]]) -> Unhealthy:
    services: dict[str, set[Check]] = {}
    nodes: dict[str, set[tuple[str, str]]] = {}
    for check in checks:
        node, status = str(check.get("Node") or ""), str(check.get("Status") or "")
        service = str(check.get("ServiceName") or "")
        if service:
            services.setdefault(service, set()).add(
                (node, str(check.get("ServiceID") or ""), str(check.get("CheckID") or ""),
                 status))
        else:
            nodes.setdefault(node, set()).add((str(check.get("CheckID") or ""), status))
    return Unhealthy({k: frozenset(v) for k, v in services.items()},
                     {k: frozenset(v) for k, v in nodes.items()})


def changed(before: Unhealthy, after: Unhealthy) -> tuple[frozenset[str], frozenset[str]]:
    """(services, nodes) whose health differs between the two listings."""
    services = {name for name in before.services.keys() | after.services.keys()
                if before.services.get(name) != after.services.get(name)}
    nodes = {name for name in before.nodes.keys() | after.nodes.keys()
             if before.nodes.get(name) != after.nodes.get(name)}
    return frozenset(services), frozenset(nodes)


_SEVERITY = {"passing": 0, "warning": 1, "critical": 2}  # any other status counts as critical
_HEALTH = ("passing", "warning", "critical")


def health_in(listing: Unhealthy, service: str, node: str, service_id: str) -> str:
    """An instance's health as the listing implies it: the worst of its own checks and its
    node's (passing when the listing names neither), as Consul aggregates health."""
    worst = 0
    for on, instance, _check, status in listing.services.get(service, ()):
        if on == node and instance == service_id:
            worst = max(worst, _SEVERITY.get(status, 2))
    for _check, status in listing.nodes.get(node, ()):
        worst = max(worst, _SEVERITY.get(status, 2))
    return _HEALTH[worst]


def disagrees(listing: Unhealthy, service: str, seen: Mapping[tuple[str, str], str]) -> bool:
    """Whether a watcher's last read (instance (node, service ID) -> health) disagrees with the
    listing: a check that changed and changed back between two listings is no change, but one
    a read saw before the listing could see it (an instance registered critical and passing a
    moment later) must be read again."""
    return any(health_in(listing, service, node, service_id) != health
               for (node, service_id), health in seen.items())
