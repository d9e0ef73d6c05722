"""Names from a registry as messages show them. Pure.

A Consul service ID (an etcd key, a ZooKeeper child) is whatever its registrant wrote, newlines
and NULs included; shown as is, one in a log line or an Event would forge a line of its own.
"""

from __future__ import annotations


def printable(name: str) -> str:
    """The name as is when every character prints, else with the others escaped (``\\n``)."""
    return name if name.isprintable() else name.encode("unicode_escape").decode("ascii")


def has_control_characters(text: str) -> bool:
    """C0 or C1 control characters (a newline, an escape): what a terminal or a log line acts
    on. Other characters that do not print alone (a no-break space, a zero-width joiner) are
    text."""
    return any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in text)


# How much of a name a message quotes: a 200,000-character id, quoted whole in four conditions,
# made a status too large to write.
SHOWN = 120


def shown(value: object) -> str:
    """``value`` as a message quotes it: repr() (escaped: it stays one line), a text cut to its
    first SHOWN characters."""
    if isinstance(value, str) and len(value) > SHOWN:
        return f"{value[:SHOWN]!r}… ({len(value)} characters)"
    return repr(value)
