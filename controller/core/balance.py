"""How a ring that balances by load (``spec.balance.by: load``) stands, for its status and events:
the ``Balanced`` condition, ``status.lastRebalance`` and the member loads ring.json shows. Pure.

``Balanced`` is True while every member carries at most ``1 + tolerance`` of its fair share of
the measured load; False while one carries more (``Rebalancing``: the next rebalance moves
shards) or while no placement can meet the tolerance because one shard alone is heavier than a
member's allowance (``ShardTooHeavy``: more shards would split it); Unknown while no member's
agent reports load (the ring stays balanced by count). Its message carries no measured figure,
so a load that drifts does not rewrite the status: status.measuredLoad has the figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from controller.core import loads, ringfile
from controller.core.conditions import Condition
from controller.core.decision import Rebalanced
from controller.core.events import Event
from controller.core.ring.loadbalance import fair_shares, imbalance, member_loads
from controller.core.spec import RingConfig
from controller.core.views import RingObject


def balance_condition(config: RingConfig, published: ringfile.RingFile | None,
                      shard_load: np.ndarray | None) -> Condition | None:
    """``Balanced`` for a ring that balances by load (None otherwise, or before a ring is
    published); ``shard_load``: the measured load of each shard (None: nothing measured)."""
    if not config.balance.by_load or published is None:
        return None
    assignment = published.assignment
    if shard_load is None or len(shard_load) != assignment.shards:
        return Condition("Balanced", None, "NoLoadReports",
                         "no member's ring agent reports load (run the agents with --load-url "
                         "or --load-from-prometheus); shards stay balanced by count until one "
                         "does")
    allowed = 1.0 + config.balance.tolerance
    weights = np.array([m.weight for m in assignment.members], dtype=np.float64)
    fair = fair_shares(shard_load, weights, assignment.table.shape[1])
    if imbalance(member_loads(assignment.table, shard_load, len(weights)), fair) <= allowed:
        return Condition("Balanced", True, "WithinTolerance",
                         f"every member carries at most {allowed:.2f} times its fair share of "
                         f"the measured load")
    heaviest = int(np.argmax(shard_load))
    if shard_load[heaviest] > allowed * fair.max():
        return Condition("Balanced", False, "ShardTooHeavy",
                         f"shard {heaviest} alone carries more than {allowed:.2f} times a "
                         f"member's fair share of the load, so no placement meets "
                         f"spec.balance.tolerancePercent; more shards (spec.shards) would split "
                         f"it")
    return Condition("Balanced", False, "Rebalancing",
                     f"a member carries more than {allowed:.2f} times its fair share of the "
                     f"measured load; shards move at the next rebalance (every "
                     f"{config.balance.interval:g}s, at most {config.balance.max_moves_percent:g}"
                     f"% of the shard replicas at a time)")


def balance_warning(ring: RingObject, condition: Condition | None) -> tuple[Event, ...]:
    """A Warning when the ring starts to have a shard too heavy to place within the tolerance
    (not on every pass)."""
    if condition is None or condition.reason != "ShardTooHeavy":
        return ()
    before: Mapping[str, Any] = next((c for c in ring.status.get("conditions") or []
                                      if c.get("type") == "Balanced"), {})
    if before.get("reason") == condition.reason:
        return ()
    return (Event("Warning", "ShardTooHeavy", condition.message),)


def last_rebalance(done: Rebalanced, version: int, now_text: str) -> dict[str, Any]:
    """status.lastRebalance."""
    return {"time": now_text, "ringVersion": version, "moves": done.moves,
            "loadMovedPercent": round(done.load_moved * 100, 2),
            "imbalanceBefore": round(done.before, 3), "imbalanceAfter": round(done.after, 3)}


def showing_load(ring: ringfile.RingFile, shard_load: np.ndarray | None) -> ringfile.RingFile:
    """``ring`` with each member's load under its assignment (ring.json's ``members[].load``),
    from the measured load of each shard (None, or another shard count: as it is)."""
    if shard_load is None or len(shard_load) != ring.assignment.shards:
        return ring
    members = ring.assignment.members
    per_member = member_loads(ring.assignment.table, shard_load, len(members))
    return replace(ring, member_load={member.id: loads.rounded(float(load))
                                      for member, load in zip(members, per_member, strict=True)})
