"""Status conditions per the Kubernetes API conventions. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool | None  # None is "Unknown"
    reason: str
    message: str = ""


# A condition's message, at most (Kubernetes' own Condition allows 32,768): a message quoting
# what a registrant wrote stays readable, and four of them never make a status too large to
# write.
MESSAGE_MAX = 2048


def _cut(message: str) -> str:
    return message if len(message) <= MESSAGE_MAX else message[:MESSAGE_MAX - 1] + "…"


def _status(value: bool | None) -> str:
    return "Unknown" if value is None else ("True" if value else "False")


def merge(existing: list[dict[str, Any]] | None, wanted: list[Condition], generation: int,
          now: str) -> list[dict[str, Any]]:
    """New condition list: lastTransitionTime moves only when a condition's status changes."""
    previous = {c.get("type"): c for c in existing or []}
    merged = []
    for condition in sorted(wanted, key=lambda c: c.type):
        before = previous.get(condition.type, {})
        status = _status(condition.status)
        merged.append({
            "type": condition.type, "status": status, "reason": condition.reason,
            "message": _cut(condition.message), "observedGeneration": generation,
            "lastTransitionTime": before.get("lastTransitionTime", now)
            if before.get("status") == status else now,
        })
    return merged
