"""How many shard replicas each member should own: proportional to weight, within hard caps.

A member can own each shard at most once (cap K). A zone can hold at most ``zone_cap`` replicas of
each shard (cap ``zone_cap * K``), so a zone with most of the weight cannot take more than that.
Real shares come from water-filling under those caps; integer quotas round each share down or up
(largest remainder), preferring members that already own more so that fewer replicas move.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from controller.core.ring.hashing import hash64
from controller.core.ring.model import Member, RingError


def zone_cap(members: Sequence[Member], replication: int) -> int:
    """The most replicas of one shard that one zone may hold: the smallest c that can still place R.

    With at least R zones this is 1 (R distinct zones per shard); with fewer it is the most even
    spread. Members without zones are each treated as a zone of their own (no constraint).
    """
    if not any(m.zone is not None for m in members):
        return 1
    sizes: dict[str, int] = {}
    for member in members:
        sizes[zone_of(member)] = sizes.get(zone_of(member), 0) + 1
    for cap in range(1, replication + 1):
        if sum(min(cap, size) for size in sizes.values()) >= replication:
            return cap
    raise RingError(f"replicationFactor {replication} needs at least {replication} members")


def zone_of(member: Member) -> str:
    # "\0" cannot appear in a real zone name, so unzoned members never share a zone with one.
    return member.zone if member.zone is not None else "\0" + member.id


def zone_indices(members: Sequence[Member]) -> np.ndarray:
    """Each member's zone as a number (zones sorted by name): what the engines compare."""
    names = sorted({zone_of(m) for m in members})
    index = {zone: i for i, zone in enumerate(names)}
    return np.array([index[zone_of(m)] for m in members], dtype=np.int64)


def real_shares(members: Sequence[Member], shards: int, replication: int,
                cap_per_zone: int) -> list[float]:
    """Weight-proportional shares of K*R replicas, water-filled under member and zone caps."""
    total = shards * replication
    n = len(members)
    zoned = any(m.zone is not None for m in members)
    zones = [zone_of(m) for m in members] if zoned else []
    share = [0.0] * n
    fixed = [False] * n
    zone_limit = cap_per_zone * shards
    while True:
        remaining = total - sum(share[i] for i in range(n) if fixed[i])
        free = [i for i in range(n) if not fixed[i]]
        if not free:
            return share
        free_weight = sum(members[i].weight for i in free)
        for i in free:
            share[i] = remaining * members[i].weight / free_weight
        saturated = [i for i in free if share[i] > shards]
        if saturated:
            for i in saturated:
                share[i], fixed[i] = float(shards), True
            continue
        if not zoned:
            return share
        zone_sum: dict[str, float] = {}
        for i in range(n):
            zone_sum[zones[i]] = zone_sum.get(zones[i], 0.0) + share[i]
        full = {z for z, s in zone_sum.items() if s > zone_limit * (1 + 1e-12)}
        if not full:
            return share
        for z in full:
            # Shared anew, its members' caps included: members fixed at K by their own weight
            # can still be together over the zone's limit (two heavy members of one zone).
            inside = [i for i in range(n) if zones[i] == z]
            for i in inside:
                fixed[i] = False
            _fill_zone(members, inside, share, fixed, zone_limit, shards)


def _fill_zone(members: Sequence[Member], inside: list[int], share: list[float],
               fixed: list[bool], limit: float, shards: int) -> None:
    """Share ``limit`` among one zone's members by weight, each capped at ``shards``."""
    remaining = limit - sum(share[i] for i in inside if fixed[i])
    free = [i for i in inside if not fixed[i]]
    while free:
        weight = sum(members[i].weight for i in free)
        over = [i for i in free if remaining * members[i].weight / weight > shards]
        if not over:
            for i in free:
                share[i] = remaining * members[i].weight / weight
            break
        for i in over:
            share[i] = float(shards)
            remaining -= shards
        free = [i for i in free if i not in over]
    for i in inside:
        fixed[i] = True


@dataclass(frozen=True)
class Quotas:
    """``target`` is the chosen quota; any member may end anywhere in [low, high] as long as the
    total is K*R (the choice among tied shares is free)."""

    target: list[int]
    low: list[int]
    high: list[int]


def integer_quotas(members: Sequence[Member], shards: int, replication: int,
                   previous_loads: Sequence[int] | None = None,
                   tiebreak: Sequence[int] | None = None,
                   can_fill: Sequence[int] | None = None) -> Quotas:
    """Each member's number of shard replicas: floor or ceil of its real share, summing to K*R.

    Where shares tie, a rounding-up goes first to members that already own more (fewer moves), then
    to members that can take more of the current vacancies (``can_fill``), then by hash.
    """
    cap_per_zone = zone_cap(members, replication)
    shares = real_shares(members, shards, replication, cap_per_zone)
    total = shards * replication
    # Round away float noise so that equal shares give equal floors.
    quotas = [min(shards, math.floor(s + 1e-9)) for s in shares]
    low = list(quotas)
    # Unzoned members are zones of their own whose cap (1 * K) is the member cap: no extra check.
    zoned = any(m.zone is not None for m in members)
    zones = [zone_of(m) if zoned else "" for m in members]
    zone_used: dict[str, int] = {}
    for zone, quota in zip(zones, quotas, strict=True):
        zone_used[zone] = zone_used.get(zone, 0) + quota
    loads = previous_loads if previous_loads is not None else [0] * len(members)
    ties = tiebreak if tiebreak is not None else [hash64(m.id) for m in members]
    useful = can_fill if can_fill is not None else [0] * len(members)
    order = sorted(
        range(len(members)),
        key=lambda i: (-round(shares[i] - quotas[i], 9), -loads[i], -useful[i], ties[i],
                       members[i].id),
    )
    extra = total - sum(quotas)
    zone_limit = cap_per_zone * shards if zoned else total
    # Two passes: first only members owed a fraction, then anyone with room (float leftovers).
    for owed_only in (True, False):
        for i in order:
            if extra == 0:
                break
            if owed_only and shares[i] - quotas[i] <= 1e-9:
                continue
            if quotas[i] < shards and zone_used[zones[i]] < zone_limit:
                quotas[i] += 1
                zone_used[zones[i]] += 1
                extra -= 1
    if extra:
        raise RingError("no placement satisfies the member and zone limits")  # pragma: no cover
    high = [max(q, lo + 1 if shares[i] - lo > 1e-9 and lo < shards else lo)
            for i, (q, lo) in enumerate(zip(quotas, low, strict=True))]
    return Quotas(target=quotas, low=low, high=high)
