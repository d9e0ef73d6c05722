"""A Service's EndpointSlices as the core's typed instances. Pure.

Endpoints follow Kubernetes' own conditions:

* ``ready`` (nil counts as ready, as the API defines it): a member;
* ``terminating`` while still ``serving``: draining — it owns nothing in the next version, and
  keeps serving its shards until their new owners have them (make-before-break);
* not serving: not a member.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from controller.core.instance import CRITICAL, PASSING, Instance, frozen
from controller.sources.kubernetes.query import KubernetesQuery

ZONE_LABEL = "topology.kubernetes.io/zone"


def _port(slice_: Mapping[str, Any], wanted: str | int | None) -> tuple[int | None, str | None]:
    """The slice's port for the ring, or why there is none."""
    ports = [p for p in slice_.get("ports") or [] if isinstance(p, dict)]
    if wanted is None:
        if len(ports) > 1:
            return None, "the Service has several ports: set spec.kubernetes.port to one of them"
        chosen = ports[0] if ports else None
    else:
        # By name first; then by number: 8080, or "8080" quoted in YAML (a Service's port may
        # be named with digits only, and that name wins).
        number = int(wanted) if isinstance(wanted, int) or wanted.isdecimal() and \
            wanted.isascii() else None
        chosen = next((p for p in ports if p.get("name") == wanted), None) or \
            next((p for p in ports if number is not None and p.get("port") == number), None)
        if chosen is None:
            listed = ", ".join(sorted({f"{p['name']} ({p.get('port')})" if p.get("name")
                                       else str(p.get("port")) for p in ports}))
            return None, (f"the Service's endpoints have no port {wanted!r} (a number is the "
                          f"port the Pods listen on, its targetPort, not the Service's port; "
                          f"they list {listed or 'none'})")
    port = chosen.get("port") if chosen else None
    return (port if isinstance(port, int) else 0), None


def _name(endpoint: Mapping[str, Any], address: str) -> str:
    target = endpoint.get("targetRef") or {}
    if target.get("kind") == "Pod" and target.get("name"):
        return str(target["name"])
    return str(endpoint.get("hostname") or address)


def instances_from_slices(slices: Iterable[Mapping[str, Any]], query: KubernetesQuery
                          ) -> tuple[Instance, ...]:
    """One instance per endpoint (by pod name, else hostname, else address), sorted. An endpoint
    listed twice (slices are updated one at a time) counts once, the more available first."""
    found: dict[str, Instance] = {}
    # IPv4 slices first, then by name: a dual-stack Service lists each Pod in an IPv4 and an IPv6
    # slice, and its member must keep one address whatever the slices' (random) names.
    for slice_ in sorted(slices, key=lambda s: (s.get("addressType") != "IPv4",
                                                str((s.get("metadata") or {}).get("name")))):
        if slice_.get("addressType") == "FQDN":
            continue
        port, problem = _port(slice_, query.port)
        for endpoint in slice_.get("endpoints") or []:
            addresses = endpoint.get("addresses") or []
            if not addresses:
                continue
            address = str(addresses[0])  # all of one endpoint's addresses are one pod's
            name = _name(endpoint, address)
            origin = f"endpoint {name!r} of Service {query.service!r}"
            if problem:
                instance = Instance(origin, name, invalid=problem)
            else:
                conditions = endpoint.get("conditions") or {}
                ready = conditions.get("ready") is not False  # nil: ready (the API says so)
                serving = conditions.get("serving", ready) is not False
                terminating = conditions.get("terminating") is True
                zone = endpoint.get("zone")
                instance = Instance(
                    origin, name, address=address, port=port or 0,
                    health=PASSING if serving else CRITICAL,
                    host_labels=frozen({"zone": str(zone), ZONE_LABEL: str(zone)} if zone
                                       else None),
                    labels=frozen({"nodeName": str(endpoint["nodeName"])}
                                  if endpoint.get("nodeName") else None),
                    draining=terminating and serving)
            kept = found.get(name)
            if kept is None or _rank(instance) < _rank(kept):
                found[name] = instance
    return tuple(found[name] for name in sorted(found))


def _rank(instance: Instance) -> int:
    if instance.invalid:
        return 3
    return 0 if instance.health == PASSING and not instance.draining else \
        1 if instance.health == PASSING else 2
