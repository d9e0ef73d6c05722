"""Instances registered as values — an etcd key's, a ZooKeeper node's — as the design notes
register them: ``host:port``, or a JSON document with the address (``host`` or ``host:port``, in
an address field), ``port``, ``weight``, ``zone`` and string ``metadata``. Pure.

A bad value becomes an instance marked invalid (the ring names the key and says why), never an
exception: whatever a registrant wrote is that key's problem, not its source's."""

from __future__ import annotations

import json
from typing import Any

from controller.core.instance import Instance, Weights, frozen
from controller.core.printable import shown


def from_registration(origin: str, name: str, value: bytes,
                      address_field: str = "address") -> Instance:
    try:
        return _decoded(origin, name, value, address_field)
    except Exception as error:  # noqa: BLE001 - JSON nested a few thousand deep raises
        # RecursionError, not ValueError; see the module's docstring
        return Instance(origin, name, invalid=f"the value cannot be read ({type(error).__name__})")


def _decoded(origin: str, name: str, value: bytes, address_field: str) -> Instance:
    try:
        text = value.decode()
    except UnicodeDecodeError:
        return Instance(origin, name, invalid="the value is not UTF-8 text")
    document = _json_document(text.strip())
    if document is _NOT_JSON:
        return Instance(origin, name, invalid="the value starts like JSON but is not valid JSON")
    if document is None:
        host, digits = _host_port(text.strip())
        if not host or digits is None or _spaced(host):
            return Instance(origin, name, invalid="the value is neither JSON nor host:port")
        port = _port(digits)
        if port is None:
            return Instance(origin, name, invalid=f"port {shown(digits)} is not a port number")
        return Instance(origin, name, address=host, port=port)
    problem = _registration_problem(document, address_field)
    if problem:
        return Instance(origin, name, invalid=problem)
    host, port, problem = host_and_port(str(document[address_field]),
                                        int(document.get("port") or 0), address_field, "port")
    if problem:
        return Instance(origin, name, invalid=problem)
    weight = document.get("weight")
    metadata = document.get("metadata")
    zone = document.get("zone")
    return Instance(
        origin, name, address=host, port=port,
        weights=Weights(weight, weight) if weight is not None else None,
        labels=frozen({str(k): str(v) for k, v in metadata.items()} if metadata else None),
        host_labels=frozen({"zone": str(zone)} if zone else None),
        # for spec.members.drainFrom: field:<name>
        fields=frozen({str(k): str(v).lower() if isinstance(v, bool) else str(v)
                       for k, v in document.items() if isinstance(v, str | int | float | bool)}))


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
    if document.get(address_field) in (None, ""):
        return f"the JSON value has no \"{address_field}\""
    if not isinstance(document[address_field], str) or not document[address_field].strip():
        return f"\"{address_field}\" {shown(document[address_field])} is not a host or host:port"
    port = document.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or
                             not 0 <= port < 65536):
        return f"port {shown(port)} is not a port number"
    weight = document.get("weight")
    if weight is not None and (isinstance(weight, bool) or not isinstance(weight, int | float)):
        return f"weight {shown(weight)} is not a number"
    if document.get("metadata") is not None and not isinstance(document["metadata"], dict):
        return "metadata is not an object"
    # (A zone or metadata value that is an object or a list was published as Python's text of it.)
    if not _scalar(document.get("zone")):
        return f"zone {shown(document['zone'])} is not a string"
    odd = [key for key, value in (document.get("metadata") or {}).items() if not _scalar(value)]
    if odd:
        return f"metadata {shown(str(odd[0]))} is not a string"
    return None


def host_and_port(address: str, port: int, address_field: str, port_field: str
                  ) -> tuple[str, int, str | None]:
    """An address as a registry holds it (a host, a bracketed IPv6 address, or either with
    :port; the ends trimmed) beside the registration's own port: (host, port, None), or what is
    wrong with it. A port in the address narrows a port 0 ("any") and must otherwise agree: one
    of the two is wrong, and nobody can tell which."""
    host, digits = _host_port(address.strip())
    in_address = _port(digits) if digits is not None else None
    if digits is not None and in_address is None:
        return host, port, f"port {shown(digits)} in \"{address_field}\" is not a port number"
    if _spaced(host):
        return host, port, f"\"{address_field}\" {shown(host)} is not a host or host:port"
    if in_address and port not in (0, in_address):
        return host, port, f"\"{address_field}\" gives port {in_address} and " \
                           f"\"{port_field}\" {port}"
    return host, port or in_address or 0, None


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float)


def _host_port(text: str) -> tuple[str, str | None]:
    """``host:port`` or ``[v6]:port`` -> (host, the port's digits); a bare host has no port
    (None)."""
    host, colon, port = text.rpartition(":")
    if not colon or not (port.isascii() and port.isdigit()) or \
            (":" in host and not host.startswith("[")):
        return _unbracketed(text), None
    return _unbracketed(host), port


def _unbracketed(host: str) -> str:
    """``[fd00::1]`` is the address ``fd00::1``."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _spaced(host: str) -> bool:
    """A host with white space or control characters in it (no address has them)."""
    return any(c.isspace() or not c.isprintable() for c in host)


def _port(digits: str) -> int | None:
    """The port the digits write, if they write one (0-65535; 0: any, as ring.json reads it)."""
    digits = digits.lstrip("0") or "0"
    port = int(digits) if len(digits) <= 5 else 65536
    return port if port < 65536 else None
