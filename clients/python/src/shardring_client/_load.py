"""Exposing what each shard carries, for balancing by load (``balance.by: load``): the ring agent
beside the workload reads it (``--load-url``) and reports it with its acknowledgement."""

from __future__ import annotations

import math
from collections.abc import Mapping

METRIC = "shardring_shard_load"


def load_exposition(loads: Mapping[int, float]) -> str:
    """Prometheus' text format for per-shard loads (``shardring_shard_load{shard="17"} 1234``),
    by shard number; serve it on the workload's metrics endpoint. Any unit works (series,
    requests per second, bytes) as long as every member of the ring uses the same one."""
    lines = [f"# HELP {METRIC} What this shard costs the member serving it (any unit, the same "
             "for every member).", f"# TYPE {METRIC} gauge"]
    for shard in sorted(loads):
        value = float(loads[shard])
        if shard < 0 or not math.isfinite(value) or value < 0:
            raise ValueError(f"shard {shard}: a load is a finite number >= 0, not {value!r}")
        lines.append(f'{METRIC}{{shard="{shard}"}} {value!r}')
    return "\n".join(lines) + "\n"
