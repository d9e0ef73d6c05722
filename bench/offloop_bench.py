"""How long one big ring's pass stalls the event loop: planned inline versus in the planning thread.

While a pass plans one large ring, a ticker on the same loop sleeps 5 ms at a time and records how
late it wakes: that lateness is what every other ring's watches and passes wait. Writes
bench/results/offloop.{json,md}; `HEAVY_PLAN` in controller/operator/worker.py is chosen from the
cost column (members x (shards x replication + virtual nodes)).

    .venv/bin/python bench/offloop_bench.py
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from controller.core.instance import Instance
from controller.core.planner import Gathered, plan_pass
from controller.core.source_state import Snapshot, SourceState
from controller.core.views import RingObject
from controller.operator.planning import HEAVY_PLAN, plan_cost
from controller.sources.specs import parse_spec

RESULTS = Path(__file__).resolve().parent / "results"
CASES = [  # (members, shards, replication, algorithm)
    (10, 256, 1, "balanced"),
    (100, 4096, 2, "balanced"),
    (1000, 16384, 1, "balanced"),
    (1000, 65536, 3, "balanced"),
    (1000, 16384, 1, "consistent"),
]


def entries(count: int) -> tuple[Instance, ...]:
    return tuple(Instance(f"web-{i}", f"web-{i}", f"node-{i // 50}", f"10.1.{i // 250}.{i % 250}",
                          9100) for i in range(count))


def inputs(members: int, shards: int, replication: int, algorithm: str) -> tuple[Any, ...]:
    spec: dict[str, Any] = {"service": {"name": "web"}, "shards": shards,
                            "replicationFactor": replication, "algorithm": algorithm,
                            "stabilization": {"window": "0s", "maxDelay": "0s"}}
    ring = RingObject("bench", "big", "uid", 1, spec, {})
    config = parse_spec("big", spec)
    source = SourceState(Snapshot(1, entries(members), time.monotonic()))
    return ring, config, Gathered(None, source)


async def stalls_during(work: Any) -> tuple[float, float]:
    """(seconds the work took, the longest the loop was late for a 5 ms sleep meanwhile)."""
    worst = 0.0
    done = False

    async def ticker() -> None:
        nonlocal worst
        while not done:
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            worst = max(worst, time.perf_counter() - before - 0.005)
    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    started = time.perf_counter()
    await work()
    took = time.perf_counter() - started
    done = True
    await task
    return took, worst


async def measure() -> list[dict[str, Any]]:
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="planner")
    rows = []
    for members, shards, replication, algorithm in CASES:
        ring, config, gathered = inputs(members, shards, replication, algorithm)

        async def inline(ring: Any = ring, config: Any = config, gathered: Any = gathered) -> None:
            plan_pass(ring, config, gathered, time.monotonic(), "now")

        async def threaded(ring: Any = ring, config: Any = config,
                           gathered: Any = gathered) -> None:
            await asyncio.get_running_loop().run_in_executor(
                pool, plan_pass, ring, config, gathered, time.monotonic(), "now")
        took, inline_stall = await stalls_during(inline)
        _, thread_stall = await stalls_during(threaded)
        rows.append({"members": members, "shards": shards, "replication": replication,
                     "algorithm": algorithm, "cost": plan_cost(config, gathered.source),
                     "plan_ms": round(took * 1000, 1),
                     "loop_stall_inline_ms": round(inline_stall * 1000, 1),
                     "loop_stall_thread_ms": round(thread_stall * 1000, 1),
                     "off_loop": plan_cost(config, gathered.source) >= HEAVY_PLAN})
    pool.shutdown()
    return rows


def main() -> None:
    rows = asyncio.run(measure())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "offloop.json").write_text(json.dumps(
        {"heavy_plan": HEAVY_PLAN, "rows": rows}, indent=2, sort_keys=True) + "\n")
    lines = ["| members | shards | R | algorithm | cost | plan ms | loop stall inline ms | "
             "loop stall threaded ms | planned off the loop |", "|---" * 9 + "|"]
    for r in rows:
        lines.append(f"| {r['members']} | {r['shards']} | {r['replication']} | {r['algorithm']} "
                     f"| {r['cost']:,} | {r['plan_ms']} | {r['loop_stall_inline_ms']} | "
                     f"{r['loop_stall_thread_ms']} | {'yes' if r['off_loop'] else 'no'} |")
    text = "\n".join(lines) + "\n"
    (RESULTS / "offloop.md").write_text(f"HEAVY_PLAN = {HEAVY_PLAN:,}\n\n{text}")
    print(text)


if __name__ == "__main__":
    main()
