"""Times as Kubernetes writes them (RFC 3339, UTC). Pure: the caller reads the clock."""

from __future__ import annotations

import datetime


def rfc3339(moment: datetime.datetime, *, micro: bool = False) -> str:
    """``2026-12-02T11:03:02Z`` (a Time), or with microseconds (a MicroTime: Leases, Events)."""
    utc = moment.astimezone(datetime.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339(*, micro: bool = False) -> str:
    """The wall clock now, for the shell's adapters (the core is given times, never reads them)."""
    return rfc3339(datetime.datetime.now(datetime.UTC), micro=micro)


def _parsed(text: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None


def seconds_between(earlier: str, later: str) -> float | None:
    """``later - earlier`` in seconds, for two times as written above (None: either unreadable,
    or one of them without a zone)."""
    start, end = _parsed(earlier), _parsed(later)
    if start is None or end is None or (start.tzinfo is None) != (end.tzinfo is None):
        return None
    return (end - start).total_seconds()


def epoch(text: str) -> float | None:
    """Seconds since 1970 for a time as written above (None: unreadable)."""
    moment = _parsed(text)
    return None if moment is None else moment.timestamp()
