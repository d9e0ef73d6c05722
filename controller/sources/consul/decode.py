"""Consul's /v1/health/service entries as the core's typed instances. Pure."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from controller.core.instance import CRITICAL, PASSING, WARNING, Health, Instance, Weights, frozen
from controller.core.printable import shown
from controller.sources.registration import host_and_port

_SEVERITY: dict[str, int] = {PASSING: 0, WARNING: 1, CRITICAL: 2}


def health_status(checks: Iterable[Mapping[str, Any]] | None) -> Health:
    """An instance's health as Consul aggregates it (its DNS interface, its load balancing): the
    worst of its node's and its service's checks (an unknown status counts as critical;
    maintenance mode is a critical check); no checks at all is passing."""
    worst: Health = PASSING
    for check in checks or ():
        status = check.get("Status") or CRITICAL
        severity = _SEVERITY.get(status, 2)
        if severity > _SEVERITY[worst]:
            worst = (PASSING, WARNING, CRITICAL)[severity]
    return worst


def instance_from_health(entry: Mapping[str, Any]) -> Instance:
    """One entry of /v1/health/service as the rings see it: the raw entry carries indexes that
    change on every reply, and much more than a ring reads."""
    node = entry.get("Node") or {}
    service = entry.get("Service") or {}
    weights = service.get("Weights")
    port = service.get("Port") or 0
    # The catalog takes any integer; a ring publishes only what its readers accept.
    valid_port = isinstance(port, int) and 0 <= port < 65536
    field = "Address" if service.get("Address") else "Node.Address"
    # The catalog takes any text too (host:port, white space): checked as the other sources'
    # registrations are, and a bracketed IPv6 address unbracketed as theirs are.
    address, port, problem = host_and_port(str(service.get("Address") or node.get("Address")
                                               or ""), port if valid_port else 0, field, "Port")
    return Instance(
        origin=f"{shown(service.get('ID'))} on node {shown(node.get('Node'))}",
        name=str(service.get("ID") or ""),
        node=str(node.get("Node") or ""),
        address=address,
        port=port,
        invalid=problem if valid_port else f"port {service.get('Port')!r} is not a port number",
        health=health_status(entry.get("Checks")),
        weights=Weights(weights.get("Passing", 1), weights.get("Warning", 1)) if weights
        else None,
        labels=frozen(service.get("Meta")),
        host_labels=frozen(node.get("Meta")),
        tags=tuple(sorted(service.get("Tags") or ())))


def instances_from_health(entries: Iterable[Mapping[str, Any]]) -> tuple[Instance, ...]:
    """Sorted by node and service ID, so that equal replies give equal tuples."""
    return tuple(sorted(map(instance_from_health, entries), key=lambda i: (i.node, i.name)))


def instances_from_reply(body: bytes) -> tuple[Instance, ...]:
    """The reply's entries, decoded and slimmed one at a time: the whole reply is never held
    decoded, and a thread doing this lets the event loop run between entries."""
    text = body.decode()
    decode = json.JSONDecoder().raw_decode
    start = text.find("[")
    if start < 0:
        if text.strip() in ("", "null"):
            return ()
        raise ValueError("Consul's reply is not a JSON list")

    def entries() -> Iterator[dict[str, Any]]:
        position = _skip(text, start + 1)
        while position < len(text) and text[position] != "]":
            entry, position = decode(text, position)
            yield entry
            position = _skip(text, position)
    return instances_from_health(entries())


def _skip(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n,":
        position += 1
    return position


