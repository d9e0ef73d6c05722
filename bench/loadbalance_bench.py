"""Balancing by load (issue #26), the engine alone: one rebalance of a count-balanced ring whose
shards carry heavy-tailed loads (Pareto, alpha 1.2, capped at 100x the median), side by
side with what hashmod over the members and the count-balanced ring carry. Median of 3 timings
in one process. Writes bench/results/loadbalance.{json,md}.

    .venv/bin/python bench/loadbalance_bench.py        (make bench-loadbalance)
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_bench import save  # noqa: E402

from controller.core.ring import Member, RingSpec, plan  # noqa: E402
from controller.core.ring.loadbalance import (  # noqa: E402
    fair_shares,
    imbalance,
    member_loads,
    rebalance,
)

# (members, shards, replication, tolerance, budget)
CASES = [(4, 1024, 1, 0.10, 1024), (10, 4096, 1, 0.10, 4096), (100, 65536, 1, 0.10, 65536),
         (100, 65536, 2, 0.10, 65536)]


def case(members: int, shards: int, replication: int, tolerance: float, budget: int) -> dict:
    rng = np.random.default_rng(26)
    # Heavy-tailed (Pareto, alpha 1.2), the heaviest 100x the median (a few targets 50-100x).
    loads = rng.pareto(1.2, shards) + 1.0
    loads = np.minimum(loads, 100 * np.median(loads))
    assignment = plan([Member(f"m-{i:03d}") for i in range(members)],
                      RingSpec(shards, replication))
    weights = np.ones(members)
    zones = np.arange(members)
    fair = fair_shares(loads, weights, replication)
    hashmod = np.array([[(s + r) % members for r in range(replication)] for s in range(shards)])
    times, result = [], None
    for _ in range(3):
        start = time.perf_counter()
        result = rebalance(assignment.table, loads, weights, zones, 1, tolerance, budget)
        times.append(time.perf_counter() - start)
    assert result is not None
    return {"members": members, "shards": shards, "replication": replication,
            "tolerance": tolerance, "budget": budget,
            "load_median": round(float(np.median(loads)), 2),
            "load_max": round(float(loads.max()), 1),
            "imbalance_hashmod": round(imbalance(member_loads(hashmod, loads, members), fair), 3),
            "imbalance_count": round(result.before, 3),
            "imbalance_load": round(result.after, 3),
            "moves": len(result.moves),
            "moved_load_fraction": round(sum(m.load for m in result.moves) /
                                         float(loads.sum() * replication), 4),
            "rebalance_ms": round(statistics.median(times) * 1000, 1),
            "too_heavy": result.too_heavy}


def main() -> int:
    rows = [case(*c) for c in CASES]
    for row in rows:
        print(json.dumps(row), flush=True)
    save("loadbalance", {f"n{r['members']}_k{r['shards']}_r{r['replication']}": r
                         for r in rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
