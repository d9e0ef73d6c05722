"""Names from a registry as messages show them. Pure.

A Consul service ID (an etcd key, a ZooKeeper child) is whatever its registrant wrote, newlines
and NULs included; shown as is, one in a log line or an Event would forge a line of its own.
"""

from __future__ import annotations


def printable(name: str) -> str:
    """The name as is when every character prints, else with the others escaped (``\\n``)."""
    return name if name.isprintable() else name.encode("unicode_escape").decode("ascii")
