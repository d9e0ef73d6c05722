"""Load reports (issue #26): what each member's agent measured its shards to carry, as the agent
writes it into its acknowledgement Lease and as the operator turns the reports into one load per
shard. Pure: the caller reads the clock.

Why the Lease: the agent already writes it and the operator already watches it, so a report costs
no new object, watch or permission; an annotation holds it (at most ``LIMIT`` bytes: a Lease's
annotations may hold 256 KiB in all).

The text: ``v1 <shard>=<load> …`` for the shards the member serves, by shard number, each load
rounded to 3 significant digits. Over ``LIMIT`` the lightest shards are left out; a shard nobody
reported counts as the mean reported load (so does every shard before the first report).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from controller.core.ring.loadbalance import fair_shares, imbalance, member_loads

ANNOTATION = "shardring.io/load"
AT = "shardring.io/load-at"  # when the agent measured (RFC 3339)
LIMIT = 65536


def _rounded(value: float) -> str:
    if value <= 0 or not math.isfinite(value):
        return "0"
    text = f"{value:.3g}"
    return text if "e" not in text else str(int(float(text)))


def rounded(value: float) -> float:
    """A load as shown and reported: three significant figures (0 for nothing or nonsense)."""
    return float(_rounded(value))


def encode(loads: Mapping[int, float], limit: int = LIMIT) -> str:
    """The annotation's text for these per-shard loads, at most ``limit`` bytes."""
    entries = {shard: _rounded(load) for shard, load in loads.items()}
    kept = sorted(entries)
    text = "v1 " + " ".join(f"{shard}={entries[shard]}" for shard in kept)
    if len(text) <= limit:
        return text
    # Leave out the lightest first (ties: the higher shard number), until it fits.
    by_weight = sorted(kept, key=lambda s: (-float(entries[s]), s))
    size, chosen = 3, []
    for shard in by_weight:
        entry = len(f"{shard}={entries[shard]}") + 1
        if size + entry > limit:
            break
        size += entry
        chosen.append(shard)
    return "v1 " + " ".join(f"{shard}={entries[shard]}" for shard in sorted(chosen))


# A shard's load, at most (as a weight; more reads as this much): a member's sum over 65,536
# shards stays far from a float's limit (1e308 loads summed to infinity, and every fair share
# with it).
LOAD_MAX = 1e15


def decode(text: str | None, shards: int) -> dict[int, float]:
    """The per-shard loads a report holds; what cannot be read is left out (a report is
    somebody else's writing: it never fails a pass)."""
    if not text or not text.startswith("v1"):
        return {}
    found: dict[int, float] = {}
    for entry in text[2:].split():
        shard, _, value = entry.partition("=")
        try:
            number, load = int(shard), float(value)
        except ValueError:
            continue
        if 0 <= number < shards and math.isfinite(load) and load >= 0:
            found[number] = min(load, LOAD_MAX)
    return found


@dataclass(frozen=True)
class Report:
    member: str
    loads: Mapping[int, float]
    at: float  # when measured, in the caller's clock (seconds)


@dataclass(frozen=True)
class Smoothed:
    """Per shard, the exponentially weighted mean of its reports and when it was last reported."""

    value: Mapping[int, float]
    at: Mapping[int, float]
    shards: int = 0  # the ring's K they were reported for (0: not known)


def smooth(previous: Smoothed | None, reports: Iterable[Report], half_life: float,
           shards: int = 0) -> Smoothed:
    """Fold new reports into the running means: a report ``dt`` seconds after the last weighs
    ``1 - 2^(-dt / half_life)``; the first report of a shard is taken as it is. Reports no newer
    than what a shard already holds change nothing (the same Lease seen twice). A new shard count
    renumbers every shard: the means start over."""
    if previous is not None and shards and previous.shards and previous.shards != shards:
        previous = None
    value = dict(previous.value) if previous else {}
    at = dict(previous.at) if previous else {}
    for report in sorted(reports, key=lambda r: (r.at, r.member)):
        for shard, load in report.loads.items():
            last = at.get(shard)
            if last is None:
                value[shard] = load
            elif report.at > last:
                weight = 1.0 - 0.5 ** ((report.at - last) / half_life) if half_life > 0 else 1.0
                value[shard] = value[shard] + weight * (load - value[shard])
            else:
                continue
            at[shard] = report.at
    return Smoothed(value, at, shards or (previous.shards if previous else 0))


def shard_loads(smoothed: Smoothed | None, shards: int, now: float,
                stale_after: float) -> np.ndarray | None:
    """One load per shard: the smoothed value of shards reported within ``stale_after`` seconds,
    the mean of those for every other shard. None when no shard has a fresh report (balance by
    count then: there is nothing to balance by)."""
    if smoothed is None:
        return None
    fresh = {s: v for s, v in smoothed.value.items()
             if 0 <= s < shards and now - smoothed.at[s] <= stale_after}
    if not fresh:
        return None
    loads = np.full(shards, sum(fresh.values()) / len(fresh), dtype=np.float64)
    for shard, load in fresh.items():
        loads[shard] = load
    return loads


HALF_LIFE = 120.0  # seconds: a report weighs half after two minutes
STALE_AFTER = 600.0  # a shard not reported for ten minutes counts as the mean again
SHOWN = 10  # members listed in status.measuredLoad (the most loaded first)
# status.measuredLoad is written again at most this often (unless who reports changes): every
# report changes the smoothed figures, and a status write per report would be one per member
# every --load-interval.
SHOWN_EVERY = 60.0


def measured(shard_load: np.ndarray, members: list[str], weights: np.ndarray,
             table: np.ndarray, reporting: int, now_text: str) -> dict[str, object]:
    """status.measuredLoad: the imbalance (the highest load over weighted fair share) and the
    most loaded members, from one load per shard."""
    per_member = member_loads(table, shard_load, len(members))
    fair = fair_shares(shard_load, weights, table.shape[1])
    ratios = per_member / np.where(fair > 0, fair, 1.0)
    order = np.lexsort((np.arange(len(members)), -ratios))[:SHOWN]
    return {"time": now_text, "imbalance": round(imbalance(per_member, fair), 3),
            "reporting": reporting,
            "members": [{"member": members[i], "load": rounded(per_member[i]),
                         "ofFairShare": round(float(ratios[i]), 3)} for i in order.tolist()]}
