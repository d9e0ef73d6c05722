"""The ``balanced`` algorithm: exact weighted quotas, zone spread, and minimal movement.

1. Quotas: every member owns floor or ceil of its weighted share of K*R replicas (quotas.py).
2. Start from the previous assignment when there is one, otherwise from a virtual-node ring, so the
   result is a deterministic function of the membership that is itself movement-friendly.
3. Keep every placement that is still valid: the owner is a member, owns the shard once, its zone is
   under the per-shard zone cap, and the member is within its quota (over-quota members give up the
   shards with the weakest hash claim).
4. Fill the vacancies walking the ring clockwise over members that still have room (consistent
   hashing with bounded loads at epsilon 0). A vacancy no member with room may take is solved by one
   swap; if even that fails the cyclic construction (always feasible) is used.

Only vacancies move, and vacancies are exactly the replicas that departed members held plus the
excess of members above their quota, so a single join or leave moves the minimum possible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from controller.core.ring.flow import fill_by_flow
from controller.core.ring.hashing import mix64_array, shard_positions
from controller.core.ring.model import Member, RingError
from controller.core.ring.quotas import integer_quotas, zone_cap, zone_indices, zone_of
from controller.core.ring.vnodes import VnodeRing, member_hashes

BASE_VNODES = 32
VACANT = -1


def assign_balanced(members: Sequence[Member], shards: int, replication: int,
                    previous: np.ndarray | None) -> np.ndarray:
    """Owners as an int array of shape (shards, replication) of member indices.

    ``previous`` has the same shape with member indices or -1 for owners that are gone.
    """
    n = len(members)
    hashes = member_hashes(members)
    ring = VnodeRing(hashes, BASE_VNODES)
    previous_loads = can_fill = None
    if previous is not None:
        previous_loads = np.bincount(previous[previous >= 0], minlength=n).tolist()
        vacant_rows = previous[(previous == VACANT).any(axis=1)]
        owned_vacant = np.bincount(vacant_rows[vacant_rows >= 0], minlength=n)
        can_fill = (len(vacant_rows) - owned_vacant).tolist()
        owners = previous.copy()
    else:
        owners = ring.first_distinct(shards, replication)
    bounds = integer_quotas(members, shards, replication, previous_loads, hashes.tolist(), can_fill)
    quotas = np.array(bounds.target, dtype=np.int64)
    zones = zone_indices(members)
    cap = zone_cap(members, replication)

    drop_invalid(owners, zones, cap)
    valid = owners.copy()
    _trim_to_quota(owners, quotas, hashes, shards)
    kept = owners.copy()
    spare = quotas - np.bincount(owners[owners >= 0], minlength=n)
    if _fill(owners, spare, ring, zones, cap, shards, swaps=False):
        return owners
    # The greedy walk got stuck (tight, replicated rings): place the vacancies by max-flow, which
    # also chooses who rounds up, so that still only vacancies move.
    starts = [(valid, bounds.high), (kept, bounds.target)]
    if previous is None:
        # Nothing is published, so nothing need stay: the flow may place every replica. (Kept
        # placements of the ring's own start can leave no way to fill the rest, and the swaps
        # below cost a scan of the table per vacancy: 5 minutes for 4 members, R=3, K=65,536.)
        starts.append((np.full_like(owners, VACANT), bounds.target))
    for start, limit in starts:
        owners = start.copy()
        _trim_to_quota(owners, np.array(limit, dtype=np.int64), hashes, shards)
        if fill_by_flow(owners, bounds, zones, cap):
            return owners
    owners = kept
    spare = quotas - np.bincount(owners[owners >= 0], minlength=n)
    if _fill(owners, spare, ring, zones, cap, shards, swaps=True):
        return owners
    return _cyclic(members, quotas, shards, replication)


def drop_invalid(owners: np.ndarray, zones: np.ndarray, cap: int) -> None:
    """Vacate a shard's repeated owner and owners beyond the zone cap (later slots give way)."""
    shards, replication = owners.shape
    if replication == 1:
        return
    for slot in range(1, replication):
        column = owners[:, slot]
        earlier = owners[:, :slot]
        repeated = (earlier == column[:, None]).any(axis=1)
        zone_of_slot = np.where(column >= 0, zones[np.maximum(column, 0)], -2)
        earlier_zones = np.where(earlier >= 0, zones[np.maximum(earlier, 0)], -3)
        crowded = (earlier_zones == zone_of_slot[:, None]).sum(axis=1) >= cap
        owners[(repeated | crowded) & (column >= 0), slot] = VACANT


def _claim_scores(shard_ids: np.ndarray, member_ids: np.ndarray, hashes: np.ndarray,
                  shards: int) -> np.ndarray:
    """A deterministic pseudo-random strength of a member's claim on a shard (lower is stronger)."""
    return mix64_array(shard_positions(shards)[shard_ids] ^ hashes[member_ids])


def _trim_to_quota(owners: np.ndarray, quotas: np.ndarray, hashes: np.ndarray, shards: int) -> None:
    """Over-quota members give up their weakest claims.

    With replication, two members giving up the same shard would leave two vacancies that one
    newcomer cannot both take, so a shard that already has a vacancy is given up last, and each
    round vacates at most one slot per shard.
    """
    while True:
        shard_ids, slots = np.nonzero(owners >= 0)
        held = owners[shard_ids, slots]
        excess = np.bincount(held, minlength=len(quotas)) - quotas
        over = excess[held] > 0
        if not over.any():
            return
        shard_ids, slots, held = shard_ids[over], slots[over], held[over]
        has_vacancy = (owners[shard_ids] == VACANT).any(axis=1)
        order = np.lexsort((_claim_scores(shard_ids, held, hashes, shards), has_vacancy, held))
        held_sorted = held[order]
        rank = np.arange(len(held_sorted)) - np.searchsorted(held_sorted, held_sorted, side="left")
        drop = order[rank < excess[held_sorted]]
        if owners.shape[1] > 1:
            _, first = np.unique(shard_ids[drop], return_index=True)
            drop = drop[first]
        owners[shard_ids[drop], slots[drop]] = VACANT


def _fill(owners: np.ndarray, spare: np.ndarray, ring: VnodeRing, zones: np.ndarray,
          cap: int, shards: int, swaps: bool) -> bool:
    """Give each vacancy to the first member clockwise that has room and may own the shard."""
    replication = owners.shape[1]
    positions = shard_positions(shards)
    fresh = owners == VACANT  # slots placed by this fill: re-routing them in a swap costs nothing
    while True:
        vacant_shards, vacant_slots = np.nonzero(owners == VACANT)
        if not vacant_shards.size:
            return True
        # One vacancy per shard per round, so a round never puts a member twice on one shard.
        vacant_shards, first = np.unique(vacant_shards, return_index=True)
        vacant_slots = vacant_slots[first]
        active = spare[ring.owner] > 0
        ring_position, ring_owner = ring.position[active], ring.owner[active]
        if not ring_position.size:
            return False
        pointer = np.searchsorted(ring_position, positions[vacant_shards], side="left")
        pointer %= ring_position.size
        candidate = ring_owner[pointer]
        if replication > 1:
            allowed = _allowed(owners[vacant_shards], candidate, zones, cap)
        else:
            allowed = np.ones(candidate.size, dtype=bool)
        with np.errstate(over="ignore"):
            distance = ring_position[pointer] - positions[vacant_shards]
        ok = np.nonzero(allowed)[0]
        if ok.size:
            order = ok[np.lexsort((distance[ok], candidate[ok]))]
            winners = candidate[order]
            group_start = np.searchsorted(winners, winners, side="left")
            rank = np.arange(order.size) - group_start
            accepted = order[rank < spare[winners]]
            owners[vacant_shards[accepted], vacant_slots[accepted]] = candidate[accepted]
            np.subtract.at(spare, candidate[accepted], 1)
        blocked = np.nonzero(~allowed)[0]
        for i in blocked:
            shard, slot = int(vacant_shards[i]), int(vacant_slots[i])
            member = _walk(owners[shard], int(pointer[i]), ring_owner, spare, zones, cap)
            if member is None:
                member = _swap(owners, shard, spare, zones, cap, fresh) if swaps else None
                if member is None:
                    return False
            else:
                spare[member] -= 1
            owners[shard, slot] = member


def _allowed(rows: np.ndarray, candidate: np.ndarray, zones: np.ndarray, cap: int) -> np.ndarray:
    repeated = (rows == candidate[:, None]).any(axis=1)
    row_zones = np.where(rows >= 0, zones[np.maximum(rows, 0)], -1)
    crowded = (row_zones == zones[candidate][:, None]).sum(axis=1) >= cap
    allowed: np.ndarray = ~(repeated | crowded)
    return allowed


def may_own(row: np.ndarray, member: int, zones: np.ndarray, cap: int) -> bool:
    """Whether ``member`` may take a place in ``row``: not in it already, and its zone under
    the cap."""
    if member in row:
        return False
    present = row[row >= 0]
    return int((zones[present] == zones[member]).sum()) < cap


def _walk(row: np.ndarray, start: int, ring_owner: np.ndarray, spare: np.ndarray,
          zones: np.ndarray, cap: int) -> int | None:
    size = ring_owner.size
    seen: set[int] = set()
    for step in range(size):
        member = int(ring_owner[(start + step) % size])
        if member in seen:
            continue
        seen.add(member)
        if spare[member] > 0 and may_own(row, member, zones, cap):
            return member
    return None


def _swap(owners: np.ndarray, shard: int, spare: np.ndarray, zones: np.ndarray,
          cap: int, fresh: np.ndarray) -> int | None:
    """Free a member that may own ``shard``: it hands one of its shards to a member with room.

    Slots placed by this fill are tried first: handing one on moves nothing that was published.
    Returns the freed member (it keeps its load, the member with room gains one), or None.
    """
    roomy = [int(m) for m in np.nonzero(spare > 0)[0]]
    fresh_slots = list(zip(*np.nonzero(fresh & (owners >= 0)), strict=True))
    kept_slots = list(zip(*np.nonzero(~fresh & (owners >= 0)), strict=True))
    for other, slot in fresh_slots + kept_slots:
        donor = int(owners[other, slot])
        if other == shard or not may_own(owners[shard], donor, zones, cap):
            continue
        without = owners[other].copy()
        without[slot] = VACANT
        for member in roomy:
            if may_own(without, member, zones, cap):
                owners[other, slot] = member
                spare[member] -= 1
                return donor
    return None


def _cyclic(members: Sequence[Member], quotas: np.ndarray, shards: int,
            replication: int) -> np.ndarray:
    """Always-feasible layout: members' slots in (zone, id) order dealt to shards round-robin.

    A member's slots are consecutive and at most K, so it never lands twice on a shard; a zone's are
    consecutive and at most cap*K, so it never exceeds the zone cap on a shard.
    """
    order = sorted(range(len(members)), key=lambda i: (zone_of(members[i]), members[i].id))
    slots = np.repeat(np.array(order, dtype=np.int64), quotas[order])
    if slots.size != shards * replication:
        raise RingError("quotas do not add up to shards * replicationFactor")  # pragma: no cover
    owners = np.full((shards, replication), VACANT, dtype=np.int64)
    filled = np.zeros(shards, dtype=np.int64)
    for j, member in enumerate(slots):
        shard = j % shards
        owners[shard, filled[shard]] = member
        filled[shard] += 1
    return owners
