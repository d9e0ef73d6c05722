"""The ring page at scale (issue #24: "fast at 1,000 rings"): the index of 1,000 rings, and one
ring's page for a big ring (1,000 members x 16,384 shards, R=2), rendered by the operator's own
code; median of 5 in one process. Writes bench/results/ringpage.{json,md}.

    .venv/bin/python bench/ringpage_bench.py
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.core import ringfile  # noqa: E402
from controller.core.ring import Member, RingSpec, plan  # noqa: E402
from controller.core.ringpage import RingView, index, ring_page  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(5):
        start = time.perf_counter()
        size = len(fn())
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 1), size


def main() -> int:
    status = {"source": "consul:web", "members": 100, "shards": 1024, "ringVersion": 7,
              "convergence": {"applied": 100, "members": 100},
              "conditions": [{"type": t, "status": "True", "reason": "Published", "message": ""}
                             for t in ("Ready", "Converged")]}
    rings = [RingView(f"team-{n % 20}", f"ring-{n}", status) for n in range(1000)]
    big = ringfile.RingFile(plan([Member(f"10.0.{i // 250}.{i % 250}:9100")
                                  for i in range(1000)], RingSpec(16384, 2)), version=3)
    index_ms, index_bytes = timed(lambda: index(rings))
    filtered_ms, _ = timed(lambda: index(rings, "team-3"))
    page_ms, page_bytes = timed(lambda: ring_page(RingView("team-1", "big", status, big)))
    results = {"index_1000_rings": {"ms": index_ms, "bytes": index_bytes},
               "index_1000_rings_one_namespace": {"ms": filtered_ms},
               "ring_page_1000_members_16384_shards_r2": {"ms": page_ms, "bytes": page_bytes}}
    print(json.dumps(results, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ringpage.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / "ringpage.md").write_text(
        "| page | render (ms, median of 5) | size (bytes) |\n|---|---|---|\n" +
        "".join(f"| {name} | {v['ms']} | {v.get('bytes', '')} |\n"
                for name, v in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
