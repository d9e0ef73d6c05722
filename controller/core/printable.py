"""Names from a registry as messages show them. Pure.

A Consul service ID (an etcd key, a ZooKeeper child) is whatever its registrant wrote, newlines
and NULs included; shown as is, one in a log line or an Event would forge a line of its own.
"""

from __future__ import annotations


def printable(name: str) -> str:
    """The name as is when every character prints, else with the others escaped (``\\n``)."""
    return name if name.isprintable() else name.encode("unicode_escape").decode("ascii")


# How much of a name a message quotes: a 200,000-character id, quoted whole in four conditions,
# made a status too large to write.
SHOWN = 120


def shown(value: object) -> str:
    """``value`` as a message quotes it: repr() (escaped: it stays one line), a text cut to its
    first SHOWN characters."""
    if isinstance(value, str) and len(value) > SHOWN:
        return f"{value[:SHOWN]!r}… ({len(value)} characters)"
    return repr(value)
