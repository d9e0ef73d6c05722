"""The Events a pass posts: Resharded when a new version is published, a handover's end, and a
Warning when a problem begins or changes reason (not on every pass). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.core import handover
from controller.core.acks import SHOWN_LAGGING
from controller.core.decision import SHOWN_MEMBERS, Decision, Problem
from controller.core.printable import printable
from controller.core.views import RingObject


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


def handover_ended(state: handover.Progress, decision: Decision) -> Event:
    assert decision.ring is not None
    if state.done == "Acknowledged":
        return Event("Normal", "HandoverComplete",
                     f"ring version {decision.ring.version}: every new owner acknowledged its "
                     f"shards; their previous owners let go")
    return Event("Warning", "HandoverTimedOut",
                 f"ring version {decision.ring.version}: spec.handover.timeout passed before "
                 f"{', '.join(map(printable, state.waiting_for[:SHOWN_LAGGING]))} acknowledged; "
                 f"their previous owners let go anyway")


def resharded(decision: Decision) -> Event:
    ring = decision.ring
    assert ring is not None
    if decision.afresh:
        return Event("Normal", "Resharded",
                     f"ring version {ring.version}: {len(ring.assignment.members)} members, "
                     f"planned afresh: the previous version was not found (its ConfigMap "
                     f"deleted while the operator was away), so shards may have moved")
    who = "; ".join(f"{what}: {named(names, count)}" for what, names, count in (
        ("joined", decision.joined, decision.added), ("left", decision.left, decision.removed))
        if count)
    return Event("Normal", "Resharded",
                 f"ring version {ring.version}: {len(ring.assignment.members)} members "
                 f"(+{decision.added} -{decision.removed}{': ' + who if who else ''}), "
                 f"{decision.moved} shard replicas moved")


def rebalanced(decision: Decision) -> Event:
    ring, done = decision.ring, decision.rebalanced
    assert ring is not None and done is not None
    return Event("Normal", "Rebalanced",
                 f"ring version {ring.version}: {done.moves} shard replicas move for their "
                 f"measured load ({done.load_moved:.1%} of it); imbalance {done.before:.2f} -> "
                 f"{done.after:.2f}")


def named(names: tuple[str, ...], count: int) -> str:
    shown = ", ".join(map(printable, names[:SHOWN_MEMBERS]))
    return shown if count <= SHOWN_MEMBERS else f"{shown} and {count - SHOWN_MEMBERS} more"


def warnings(ring: RingObject, problem: Problem | None) -> tuple[Event, ...]:
    """A Warning event when a problem begins or changes reason, not on every pass."""
    if problem is None:
        return ()
    degraded: Mapping[str, Any] = next((c for c in ring.status.get("conditions") or []
                     if c.get("type") == "Degraded"), {})
    if degraded.get("status") == "True" and degraded.get("reason") == problem.reason:
        return ()
    return (Event("Warning", str(problem.reason), problem.message),)
