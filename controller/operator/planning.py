"""Where a pass's plan is computed: inline, or in the planning thread for a ring big enough that
planning it would stall every other ring's watches (measured: bench/results/offloop.md)."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from controller.core.limits import Limits
from controller.core.planner import Gathered, PassPlan, plan_pass
from controller.core.ring import Algorithm
from controller.core.source_state import SourceState
from controller.core.spec import RingConfig
from controller.core.views import RingObject

# Planning a ring costs about members x (shards x replication + virtual nodes); above this it runs
# in a planning thread, so one huge ring cannot stall every other ring's watches (measured:
# bench/results/offloop.md).
HEAVY_PLAN = 500_000


async def plan_off_loop(ring: RingObject, config: RingConfig, gathered: Gathered, now: float,
                        now_text: str, limits: Limits, planning: Executor | None) -> PassPlan:
    """``now`` monotonic, ``now_text`` the wall clock; ``planning``: None plans inline."""
    if planning is not None and plan_cost(config, gathered.source) >= HEAVY_PLAN:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(planning, plan_pass, ring, config, gathered, now,
                                          now_text, limits)
    return plan_pass(ring, config, gathered, now, now_text, limits)


def plan_cost(config: RingConfig, source: SourceState | None) -> int:
    """About the work of planning the ring: members x (shards x replication + virtual nodes)."""
    members = len(source.snapshot.instances) if source and source.snapshot else 0
    spec = config.ring_spec
    vnodes = spec.virtual_nodes if spec.algorithm is Algorithm.CONSISTENT else 0
    return members * (spec.shards * spec.replication + vnodes)
