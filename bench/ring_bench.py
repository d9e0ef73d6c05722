"""Ring engine benchmark: balance, movement and speed of every algorithm side by side, one process.

Writes bench/results/ring.json and bench/results/ring.md. Timings are medians of repeated runs on
this machine (2 cores, noisy): compare rows of the same run, not runs of different days.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.core.ring import Member, RingSpec, plan  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MEMBER_COUNTS = [10, 100, 1000]
SHARD_COUNTS = [1024, 16384, 65536]
REPEAT = 3


def timed(fn, repeat=REPEAT):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def ids_for(n):
    return [f"10.0.{i // 250}.{i % 250}:9100" for i in range(n)]


# ---- reference algorithms (baselines) -----------------------------------------------------------

def hashmod_owners(ids, shards):
    """Prometheus Operator sharding: a target's shard IS its member: hash mod N."""
    return [ids[s % len(ids)] for s in range(shards)]


def jump_hash(key: int, buckets: int) -> int:
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def jump_owners(ids, shards):
    return [ids[jump_hash(s, len(ids))] for s in range(shards)]


def uhashring_owners(ids, shards):
    from uhashring import HashRing
    ring = HashRing(nodes=list(ids))
    return [ring.get_node(str(s)) for s in range(shards)]


def ours(algorithm, vnodes=160):
    def owners(ids, shards, previous=None):
        spec = RingSpec(shards, 1, algorithm, vnodes)
        return plan([Member(i) for i in ids], spec, previous)
    return owners


def table_of(result):
    return result.owners if hasattr(result, "owners") else [(o,) for o in result]


def loads(owner_rows):
    counts = {}
    for row in owner_rows:
        for owner in row:
            counts[owner] = counts.get(owner, 0) + 1
    return counts


def moved(before, after):
    return sum(len(set(a) - set(b)) for a, b in zip(after, before, strict=True))


def measure(name, fn, ids, shards, stateful=False):
    base, full_time = timed(lambda: fn(ids, shards))
    base_rows = table_of(base)
    counts = loads(base_rows)
    mean = shards / len(ids)
    joined_ids = ids + ["10.9.9.9:9100"]
    left_ids = ids[1:]
    if stateful:
        joined, incremental = timed(lambda: fn(joined_ids, shards, base))
        left = fn(left_ids, shards, base)
    else:
        joined, incremental = timed(lambda: fn(joined_ids, shards))
        left = fn(left_ids, shards)
    join_moved = moved(base_rows, table_of(joined))
    leave_moved = moved(base_rows, table_of(left))
    return {
        "algorithm": name, "members": len(ids), "shards": shards,
        "peak_to_mean": round(max(counts.get(i, 0) for i in ids) / mean, 4),
        "rounding_bound": round(-(-shards // len(ids)) / mean, 4),
        "join_moved": join_moved,
        "join_ratio_to_optimum": round(join_moved / (shards / (len(ids) + 1)), 3),
        "leave_moved": leave_moved,
        "leave_ratio_to_optimum": round(leave_moved / max(1, counts.get(ids[0], 0)), 3),
        "full_ms": round(full_time * 1000, 2), "incremental_ms": round(incremental * 1000, 2),
    }


def main() -> int:
    algorithms = [
        ("balanced", ours("balanced"), True), ("consistent-100", ours("consistent", 100), False),
        ("consistent-160", ours("consistent", 160), False),
        ("rendezvous", ours("rendezvous"), False),
        ("uhashring", uhashring_owners, False), ("hashmod", hashmod_owners, False),
        ("jump", jump_owners, False),
    ]
    rows = []
    for n in MEMBER_COUNTS + [10000]:
        ids = ids_for(n)
        for shards in SHARD_COUNTS:
            for name, fn, stateful in algorithms:
                if n == 10000 and not name.startswith(("balanced", "consistent")):
                    continue
                if name in ("rendezvous",) and n * shards > 20_000_000:
                    continue
                if name in ("uhashring", "jump") and n * shards > 20_000_000:
                    continue
                row = measure(name, fn, ids, shards, stateful)
                rows.append(row)
                print(json.dumps(row), flush=True)
    # The headline comparison: N=1000, K=16384, R=1, including uhashring's ring build.
    ids = ids_for(1000)
    _, ours_time = timed(lambda: plan([Member(i) for i in ids], RingSpec(16384)), repeat=7)
    _, uhash_time = timed(lambda: uhashring_owners(ids, 16384), repeat=3)
    _, big_time = timed(lambda: plan([Member(i) for i in ids_for(10000)], RingSpec(65536)),
                        repeat=3)
    headline = {
        "balanced_n1000_k16384_ms": round(ours_time * 1000, 2),
        "uhashring_n1000_k16384_ms": round(uhash_time * 1000, 2),
        "speedup_vs_uhashring": round(uhash_time / ours_time, 1),
        "balanced_n10000_k65536_ms": round(big_time * 1000, 2),
        "targets": {"n1000_k16384_ms": 20, "speedup": 10, "n10000_k65536_ms": 500},
    }
    print(json.dumps(headline))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ring.json").write_text(json.dumps(
        {"machine": platform.platform(), "python": platform.python_version(),
         "numpy": np.__version__, "headline": headline, "rows": rows}, indent=1, sort_keys=True)
        + "\n")
    lines = ["| algorithm | N | K | peak/mean | bound | join moved (×opt) | leave moved (×opt) "
             "| full ms | incr ms |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['algorithm']} | {r['members']} | {r['shards']} | {r['peak_to_mean']} "
                     f"| {r['rounding_bound']} | {r['join_moved']} ({r['join_ratio_to_optimum']}) "
                     f"| {r['leave_moved']} ({r['leave_ratio_to_optimum']}) | {r['full_ms']} "
                     f"| {r['incremental_ms']} |")
    lines += ["", "Headline: " + json.dumps(headline)]
    (RESULTS / "ring.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'ring.json'} and {RESULTS / 'ring.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
