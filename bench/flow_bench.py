"""Plans under churn: how long the balanced engine takes when many members of a replicated ring
leave at once, the case that sends it to the exact max-flow fallback.

    python bench/flow_bench.py

100 members, shards 512 and 1024, R=2; 15 steps each in which every member is present with
probability 0.75, each planned from the previous ring. Prints plans, fallback calls, median, max
and total time (scipy is imported before timing: its one-off import costs ~0.4 s).
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import scipy.sparse.csgraph  # noqa: E402,F401 - imported before timing

from controller.core.ring import Member, RingSpec, balanced, plan  # noqa: E402


def main() -> None:
    calls = 0
    fill = balanced.fill_by_flow

    def counted(*args, **kwargs):
        nonlocal calls
        calls += 1
        return fill(*args, **kwargs)

    balanced.fill_by_flow = counted
    rng = random.Random(1)
    members = [Member(f"fleet-1-{i}") for i in range(100)]
    times = []
    for shards in (512, 1024):
        spec = RingSpec(shards, 2)
        current = plan(members, spec)
        for _ in range(15):
            alive = [m for m in members if rng.random() > 0.25]
            start = time.perf_counter()
            current = plan(alive, spec, current)
            times.append(time.perf_counter() - start)
    times.sort()
    print(f"plans {len(times)}, max-flow fallbacks {calls}, median "
          f"{times[len(times) // 2] * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms, "
          f"total {sum(times):.2f} s")


if __name__ == "__main__":
    main()
