"""Balancing by measured load (``balance.by: load``): which shards to move so that what members
carry, not how many shards they own, is even. Pure and deterministic.

Every replica of a shard carries the shard's whole load (a replicated scraper scrapes all of its
targets). A member's *ratio* is its load over its fair share (the total replica load split by
weight); the *imbalance* is the largest ratio, i.e. max/mean when weights are equal.

- ``fill_by_load``: vacancies (a lost member's shards) go, heaviest first, to the member with the
  lowest ratio that may own them. Only vacancies move.
- ``rebalance``: while the imbalance is above ``1 + tolerance`` and the move budget lasts, the
  member with the highest ratio gives one shard to another member: the move that minimises the
  larger of the two members' new ratios; when no single move helps, it swaps a heavier shard for
  a lighter one (two moves). It stops when neither lowers the highest ratio. Within the
  tolerance it moves nothing, so a steady load never oscillates.
- ``welcome``: a member that just joined carries nothing, and the others may all be within the
  tolerance; like a join when balancing by count, it takes its share at once: from the most
  loaded members, the shards that even each pair best, until it carries at least
  ``1 - tolerance`` of its fair share (never more than ``1 + tolerance``).

Moves are greedy, not proven minimal (finding the fewest is a bin-packing problem); the property
tests compare them with an exhaustive search on small rings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controller.core.ring.balanced import VACANT, may_own


@dataclass(frozen=True)
class Move:
    shard: int
    slot: int  # the replica's position in the shard's row (0: primary)
    source: int  # member index (VACANT when a vacancy was filled)
    target: int
    load: float


@dataclass(frozen=True)
class Rebalance:
    owners: np.ndarray  # the new table (a copy)
    moves: tuple[Move, ...]
    before: float  # imbalance before
    after: float  # and after
    # When the tolerance cannot be met because one shard alone is heavier than any member may
    # carry: that shard (more, smaller shards would help). None otherwise.
    too_heavy: int | None = None


def member_loads(owners: np.ndarray, shard_load: np.ndarray, members: int) -> np.ndarray:
    """Each member's load: the sum of the loads of the shards it owns (every replica counts)."""
    placed = owners >= 0
    rows = np.broadcast_to(shard_load[:, None], owners.shape)
    return np.bincount(owners[placed], weights=rows[placed], minlength=members)


def fair_shares(shard_load: np.ndarray, weights: np.ndarray, replication: int) -> np.ndarray:
    total = float(shard_load.sum()) * replication
    shares: np.ndarray = total * weights / weights.sum()
    return shares


# The highest imbalance said: a member with load whose fair share is too small for a float (a
# weight of 5e-324) is infinitely over it, which no status or ring.json can hold (not JSON).
IMBALANCE_MAX = 1e9


def imbalance(loads: np.ndarray, fair: np.ndarray) -> float:
    """The highest load over fair share (1.0: perfectly even; 1.0 also when nothing is loaded),
    at most IMBALANCE_MAX. A member carrying nothing is at 0 whatever its share: 0 over a share
    of 0 was NaN, which no comparison holds, and the ring never counted as balanced."""
    if not len(loads) or fair.sum() <= 0:
        return 1.0
    with np.errstate(over="ignore"):
        ratios = np.divide(loads, fair, out=np.where(loads > 0, np.inf, 0.0), where=fair > 0)
    return min(float(ratios.max()), IMBALANCE_MAX)


def fill_by_load(owners: np.ndarray, shard_load: np.ndarray, weights: np.ndarray,
                 zones: np.ndarray, cap: int) -> tuple[Move, ...]:
    """Fill the vacant slots (-1) of ``owners`` in place: heaviest shard first, each to the member
    with the lowest ratio that may own it (ties: the lower index). Returns the moves made."""
    n = len(weights)
    fair = fair_shares(shard_load, weights, owners.shape[1])
    safe_fair = np.where(fair > 0, fair, 1.0)
    loads = member_loads(owners, shard_load, n)
    vacant_shards, vacant_slots = np.nonzero(owners == VACANT)
    # Heaviest first (LPT), then by shard and slot: deterministic.
    order = np.lexsort((vacant_slots, vacant_shards, -shard_load[vacant_shards]))
    moves = []
    for shard, slot in zip(vacant_shards[order].tolist(), vacant_slots[order].tolist(),
                           strict=True):
        by_ratio = np.lexsort((np.arange(n), (loads + shard_load[shard]) / safe_fair))
        target = next((int(m) for m in by_ratio if may_own(owners[shard], int(m), zones, cap)),
                      None)
        if target is None:
            raise ValueError(f"no member may own shard {shard}")  # the count engine's job
        owners[shard, slot] = target
        loads[target] += shard_load[shard]
        moves.append(Move(shard, slot, VACANT, target, float(shard_load[shard])))
    return tuple(moves)


def welcome(owners: np.ndarray, shard_load: np.ndarray, weights: np.ndarray,
            zones: np.ndarray, cap: int, joined: list[int], tolerance: float) -> tuple[Move, ...]:
    """Give the ``joined`` members load, in place (see the module's docstring). Returns the
    moves made."""
    n = len(weights)
    fair = fair_shares(shard_load, weights, owners.shape[1])
    safe_fair = np.where(fair > 0, fair, 1.0)
    loads = member_loads(owners, shard_load, n)
    waiting = sorted(set(joined))
    moves: list[Move] = []
    while waiting:
        ratios = loads / safe_fair
        target = min(waiting, key=lambda m: (ratios[m], m))
        move = _best_feed(owners, shard_load, loads, safe_fair, zones, cap, target,
                          1.0 + tolerance) if ratios[target] < 1.0 - tolerance else None
        if move is None:  # it has its share, or nothing it may take evens it out
            waiting.remove(target)
            continue
        owners[move.shard, move.slot] = target
        loads[move.source] -= move.load
        loads[target] += move.load
        moves.append(move)
    return tuple(moves)


def _best_feed(table: np.ndarray, shard_load: np.ndarray, loads: np.ndarray, fair: np.ndarray,
               zones: np.ndarray, cap: int, target: int, ceiling: float) -> Move | None:
    """The one move to ``target`` that raises the lower of the two members' new ratios most
    (from the most loaded members first), leaving ``target`` at most at ``ceiling``."""
    floor = loads[target] / fair[target]
    ratios = loads / fair
    best: tuple[float, int, int, int] | None = None  # (-resulting min ratio, source, shard, slot)
    for source in np.lexsort((np.arange(len(loads)), -ratios)).tolist():
        if ratios[source] <= floor or (best is not None and ratios[source] <= -best[0]):
            break  # sources come by ratio: no later one can end above the best found
        if source == target:
            continue
        rows, slots = np.nonzero(table == source)
        movable = shard_load[rows] > 0
        rows, slots = rows[movable], slots[movable]
        allowed = _allowed_for(table, rows, target, source, zones, cap) if rows.size else rows
        if not np.any(allowed):
            continue
        rows, slots = rows[allowed], slots[allowed]
        moved = shard_load[rows]
        raised = (loads[target] + moved) / fair[target]
        value = np.where(raised <= ceiling + 1e-12,
                         np.minimum(raised, (loads[source] - moved) / fair[source]), -np.inf)
        pick = int(np.lexsort((rows, -value))[0])  # ties: the lower shard number
        if value[pick] <= floor + 1e-12:
            continue
        key = (-float(value[pick]), source, int(rows[pick]), int(slots[pick]))
        if best is None or key < best:
            best = key
    if best is None:
        return None
    _, source, shard, slot = best
    return Move(shard, slot, source, target, float(shard_load[shard]))


def rebalance(owners: np.ndarray, shard_load: np.ndarray, weights: np.ndarray,
              zones: np.ndarray, cap: int, tolerance: float, budget: int) -> Rebalance:
    """At most ``budget`` replica moves that bring the imbalance to ``1 + tolerance`` or as close
    as they can; ``owners`` is not changed (the result holds a copy)."""
    table = owners.copy()
    n = len(weights)
    fair = fair_shares(shard_load, weights, table.shape[1])
    safe_fair = np.where(fair > 0, fair, 1.0)
    loads = member_loads(table, shard_load, n)
    before = imbalance(loads, fair)
    moves: list[Move] = []
    while len(moves) < budget:
        ratios = loads / safe_fair
        worst = int(np.lexsort((np.arange(n), -ratios))[0])
        if ratios[worst] <= 1.0 + tolerance:
            break
        found = _best_move(table, shard_load, loads, safe_fair, zones, cap, worst)
        step: tuple[Move, ...] = (found,) if found is not None else ()
        if not step and budget - len(moves) >= 2:
            step = _best_swap(table, shard_load, loads, safe_fair, zones, cap, worst)
        if not step:
            break
        for move in step:
            table[move.shard, move.slot] = move.target
            loads[move.source] -= move.load
            loads[move.target] += move.load
        moves.extend(step)
    after = imbalance(loads, fair)
    moves = _net(owners, table, shard_load, loads, safe_fair, zones, cap, max(after,
                                                                              1.0 + tolerance))
    after = imbalance(member_loads(table, shard_load, n), fair)
    too_heavy = None
    # No placement meets the tolerance while one shard alone outweighs the largest allowance.
    if after > 1.0 + tolerance and shard_load.size and \
            shard_load.max() > (1.0 + tolerance) * fair.max():
        too_heavy = int(np.argmax(shard_load))
    return Rebalance(table, tuple(moves), before, after, too_heavy)


def _best_move(table: np.ndarray, shard_load: np.ndarray, loads: np.ndarray,
               fair: np.ndarray, zones: np.ndarray, cap: int, source: int) -> Move | None:
    """The one move from ``source`` that lowers its ratio most while keeping the receiver's new
    ratio below ``source``'s current one: minimise max(new source ratio, new target ratio)."""
    current = loads[source] / fair[source]
    rows, slots = np.nonzero(table == source)
    movable = shard_load[rows] > 0
    rows, slots = rows[movable], slots[movable]
    if not rows.size:
        return None
    best: tuple[float, int, int, int] | None = None  # (resulting max ratio, target, shard, slot)
    receivers = np.lexsort((np.arange(len(loads)), loads / fair))
    for target in receivers.tolist():
        if best is not None and loads[target] / fair[target] >= best[0]:
            break  # receivers come by ratio: no later one can end below the best found
        if target == source or loads[target] / fair[target] >= current:
            continue
        # Which of the source's shards may this member take (not already in the row, zone cap)?
        allowed = _allowed_for(table, rows, target, source, zones, cap)
        if not allowed.any():
            continue
        candidates = np.nonzero(allowed)[0]
        moved = shard_load[rows[candidates]]
        result = np.maximum((loads[source] - moved) / fair[source],
                            (loads[target] + moved) / fair[target])
        # Ties: the lighter shard (less moves with it), then the lower shard number.
        pick = np.lexsort((rows[candidates], moved, result))[0]
        value = float(result[pick])
        if value >= current - 1e-12:
            continue
        key = (value, target, int(rows[candidates][pick]), int(slots[candidates][pick]))
        if best is None or key < best:
            best = key
    if best is None:
        return None
    value, target, shard, slot = best
    return Move(shard, slot, source, target, float(shard_load[shard]))


def _allowed_for(table: np.ndarray, rows: np.ndarray, target: int, leaving: int,
                 zones: np.ndarray, cap: int) -> np.ndarray:
    """Which of ``rows`` may ``target`` own once ``leaving`` has left them."""
    allowed: np.ndarray = ~(table[rows] == target).any(axis=1)
    if cap < table.shape[1]:
        present = np.where(table[rows] >= 0, zones[np.maximum(table[rows], 0)], -1)
        count = (present == zones[target]).sum(axis=1) - int(zones[leaving] == zones[target])
        allowed &= count < cap
    return allowed


def _best_swap(table: np.ndarray, shard_load: np.ndarray, loads: np.ndarray,
               fair: np.ndarray, zones: np.ndarray, cap: int, source: int) -> tuple[Move, ...]:
    """Two moves: a shard of ``source`` to another member, and a lighter one of that member's to
    ``source``, chosen to minimise the larger of the two new ratios (when that lowers
    ``source``'s). For each of the other member's shards the best partner is found by binary
    search around the ideal load difference."""
    current = loads[source] / fair[source]
    source_rows, source_slots = np.nonzero(table == source)
    best: tuple[float, int, int, int] | None = None  # (result, target, source index, target index)
    choice: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    for target in np.lexsort((np.arange(len(loads)), loads / fair)).tolist():
        if best is not None and loads[target] / fair[target] >= best[0]:
            break  # receivers come by ratio: no later one can end below the best found
        if target == source or loads[target] / fair[target] >= current:
            continue
        give = _allowed_for(table, source_rows, target, source, zones, cap)
        target_rows, target_slots = np.nonzero(table == target)
        take = _allowed_for(table, target_rows, source, target, zones, cap)
        if not give.any() or not take.any():
            continue
        g_rows, g_slots = source_rows[give], source_slots[give]
        t_rows, t_slots = target_rows[take], target_slots[take]
        order = np.lexsort((g_rows, shard_load[g_rows]))
        g_rows, g_slots = g_rows[order], g_slots[order]
        given = shard_load[g_rows]
        # The load difference that evens the two: (src - d)/f_src == (tgt + d)/f_tgt.
        ideal = (loads[source] * fair[target] - loads[target] * fair[source]) / \
            (fair[source] + fair[target])
        taken = shard_load[t_rows]
        at = np.searchsorted(given, taken + ideal)
        for index in (np.clip(at - 1, 0, len(given) - 1), np.clip(at, 0, len(given) - 1)):
            difference = given[index] - taken
            result = np.maximum((loads[source] - difference) / fair[source],
                                (loads[target] + difference) / fair[target])
            result = np.where(difference > 0, result, np.inf)
            pick = int(np.lexsort((t_rows, result))[0])
            if result[pick] < current - 1e-12:
                key = (float(result[pick]), target, int(index[pick]), pick)
                if best is None or key < best:
                    best, choice = key, (g_rows, g_slots, t_rows, t_slots)
    if best is None or choice is None:
        return ()
    _, target, i, j = best
    g_rows, g_slots, t_rows, t_slots = choice
    return (Move(int(g_rows[i]), int(g_slots[i]), source, target, float(shard_load[g_rows[i]])),
            Move(int(t_rows[j]), int(t_slots[j]), target, source, float(shard_load[t_rows[j]])))


def _net(original: np.ndarray, table: np.ndarray, shard_load: np.ndarray, loads: np.ndarray,
         fair: np.ndarray, zones: np.ndarray, cap: int, bound: float) -> list[Move]:
    """The moves that remain, as ``table`` differs from ``original`` (a shard moved twice is one
    move), after putting back, lightest first, every replica whose return keeps the imbalance
    within ``bound``: the greedy steps can overshoot, and a move that is not needed is not made.
    ``table`` and ``loads`` are updated in place."""
    changed = np.argwhere(table != original)
    order = np.lexsort((changed[:, 1], changed[:, 0], shard_load[changed[:, 0]]))
    for shard, slot in changed[order].tolist():
        home, now = int(original[shard, slot]), int(table[shard, slot])
        others = np.delete(table[shard], slot)
        if home in others or (cap < table.shape[1] and int(
                (zones[others[others >= 0]] == zones[home]).sum()) >= cap):
            continue
        load = shard_load[shard]
        loads[now] -= load
        loads[home] += load
        if (loads / fair).max() <= bound + 1e-12:
            table[shard, slot] = home
        else:
            loads[now] += load
            loads[home] -= load
    return [Move(shard, slot, int(original[shard, slot]), int(table[shard, slot]),
                 float(shard_load[shard]))
            for shard, slot in np.argwhere(table != original).tolist()]
