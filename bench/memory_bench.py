"""Memory against the number of rings, on the real control plane: one operator, rings added in
steps, its RSS read once each step is Ready and the API server has been quiet for 10 s.

The rings are the scale phase's (bench/e2e_bench.py): services of 100 instances, 256-1024
shards, replication 1 or 2, window 5 s. The first step has no ring at all: what the operator
weighs before it serves anything. The slope between the last steps is the cost of one more ring
(of 100 members). Writes bench/results/memory.json (and .md); bench/plots.py draws it.

    .venv/bin/python bench/memory_bench.py        (~5 min)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from e2e_bench import Bench, save  # noqa: E402

from controller.testing import ControlPlane  # noqa: E402

STEPS = [int(n) for n in os.environ.get("BENCH_MEMORY_STEPS", "0,125,250,500,1000,2000").split(",")]
SERVICES, INSTANCES = 100, 100
QUIET_S = 10.0


def ring_spec(r: int) -> dict:
    return {"service": {"name": f"fleet-{r % SERVICES}"}, "shards": 256 * (1 + r % 4),
            "replicationFactor": 1 + r % 2,
            "stabilization": {"window": "5s", "maxDelay": "30s"}}


def slope_kb(steps: list[dict]) -> float | None:
    """Least-squares KB per ring over the steps with rings (the empty operator is the baseline,
    not a point on the line: importing and starting cost what they cost once)."""
    points = [(s["rings"], s["rss_mb"]) for s in steps if s["rings"]]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    numerator = sum((x - mean_x) * (y - mean_y) for x, y in points)
    denominator = sum((x - mean_x) ** 2 for x, _ in points)
    return round(numerator / denominator * 1024, 1)


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict = {"machine": os.uname().machine, "cores": os.cpu_count(),
                     "services": SERVICES, "instances_per_service": INSTANCES}
    steps: list[dict] = []
    with ControlPlane() as plane:
        bench = Bench(plane)
        bench.install()
        bench.register_fleet_of(SERVICES, INSTANCES)
        bench.start_operator()
        try:
            created = 0
            for rings in STEPS:
                start = time.monotonic()
                for r in range(created, rings):
                    bench.create_ring(f"ring-{r}", ring_spec(r))
                created = rings
                while bench.ready_rings() < rings and time.monotonic() - start < 900:
                    time.sleep(2)
                ready = time.monotonic() - start
                time.sleep(2)  # the operator's metrics port answers from the first step on
                bench.quiet_writes(quiet=QUIET_S)
                steps.append({"rings": rings, "ready": bench.ready_rings(),
                              "seconds_to_ready": round(ready, 1),
                              "rss_mb": round(bench.rss_mb(), 1)})
                print(json.dumps(steps[-1]), flush=True)
        finally:
            bench.stop_operator()
    results["steps"] = steps
    results["baseline_mb"] = steps[0]["rss_mb"] if steps and not steps[0]["rings"] else None
    results["per_ring_kb"] = slope_kb(steps)
    results["targets"] = {"rss_mb_at_1000_rings": 200}
    print(json.dumps(results, indent=1))
    if os.environ.get("BENCH_MEMORY_STEPS"):
        print("partial run: bench/results left as they were")
        return 0
    save("memory", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
