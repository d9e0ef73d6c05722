"""Exact placement of vacancies by maximum flow, for the cases the greedy walk cannot solve (tight,
replicated rings: common when many members leave or join at once).

Network: source -> shard (its vacant slots) -> (shard, zone) (room under the zone cap) -> member
(once per shard, if it does not already own it) -> sink (what the member must still take to reach
its low quota) or -> pool -> sink (one optional rounding-up each, as many as the total allows).
A flow that saturates every vacancy fills them all without touching a kept placement, with every
member's load inside [low, high].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from controller.core.ring.quotas import Quotas

_MAX_EDGES = 2_000_000  # beyond this the greedy fallbacks are cheaper than an exact answer
SOURCE, SINK, POOL = 0, 1, 2


def fill_by_flow(owners: np.ndarray, bounds: Quotas, zones: np.ndarray, cap: int) -> bool:
    """Fill every vacant slot (-1) of ``owners`` in place; False if no such filling exists."""
    n = len(bounds.target)
    held = np.bincount(owners[owners >= 0], minlength=n)
    vacant_shards = np.nonzero((owners < 0).any(axis=1))[0]
    if vacant_shards.size * n > _MAX_EDGES:
        return False
    vacancies = int((owners < 0).sum())
    low, high = np.asarray(bounds.low), np.asarray(bounds.high)
    must = np.maximum(0, low - held)
    optional = np.maximum(0, high - np.maximum(held, low))
    pool_size = vacancies - int(must.sum())
    if pool_size < 0 or pool_size > int(optional.sum()):
        return False
    if not vacancies:
        return True
    rows = owners[vacant_shards]  # (V, R)
    v = len(vacant_shards)
    zone_count = int(zones.max()) + 1 if n else 1
    # Node numbering: SOURCE, SINK, POOL, members, shards, then (shard, zone) pairs.
    member_node = POOL + 1 + np.arange(n)
    shard_node = POOL + 1 + n + np.arange(v)
    present_zone = np.where(rows >= 0, zones[np.maximum(rows, 0)], -1)
    room = cap - (present_zone[:, :, None] == np.arange(zone_count)).sum(axis=1)  # (V, Z)
    pair_node = np.full((v, zone_count), -1, dtype=np.int64)
    open_pairs = room > 0
    pair_node[open_pairs] = POOL + 1 + n + v + np.arange(int(open_pairs.sum()))
    nodes = POOL + 1 + n + v + int(open_pairs.sum())
    owned = np.zeros((v, n), dtype=bool)
    taken = rows >= 0
    owned[np.nonzero(taken)[0], rows[taken]] = True
    # A member may take a vacancy of a shard it does not own, in a zone with room, if it has room.
    allowed = ~owned & open_pairs[:, zones] & ((must > 0) | (optional > 0))[None, :]
    pair_shard, pair_member = np.nonzero(allowed)  # row-major: by shard, then member
    pair_of_edge = pair_node[pair_shard, zones[pair_member]]
    pair_rows, pair_zones = np.nonzero(open_pairs)
    sources = [
        (member_node[must > 0], np.full(int((must > 0).sum()), SINK), must[must > 0]),
        (member_node[optional > 0], np.full(int((optional > 0).sum()), POOL),
         optional[optional > 0]),
        (np.array([POOL]), np.array([SINK]), np.array([pool_size])),
        (np.full(v, SOURCE), shard_node, (rows < 0).sum(axis=1)),
        (shard_node[pair_rows], pair_node[pair_rows, pair_zones], room[pair_rows, pair_zones]),
        (pair_of_edge, member_node[pair_member], np.ones(len(pair_member), dtype=np.int64)),
    ]
    value, carried = _max_flow(nodes, *(np.concatenate(part)
                                        for part in zip(*sources, strict=True)))
    if value != vacancies:
        return False
    used = np.asarray(carried[pair_of_edge, member_node[pair_member]]).ravel() > 0
    for shard_index, member in zip(pair_shard[used].tolist(), pair_member[used].tolist(),
                                     strict=True):
        shard = int(vacant_shards[shard_index])
        slot = int(np.nonzero(owners[shard] < 0)[0][0])
        owners[shard, slot] = member
    return True


def _max_flow(nodes: int, tails: np.ndarray, heads: np.ndarray,
              capacities: np.ndarray) -> tuple[int, Any]:
    """(flow value, flow per edge as a sparse matrix) from SOURCE to SINK, by scipy's Dinic (in C:
    a pure-Python augmenting-path search took seconds per ring under churn and starved the event
    loop). Deterministic: the same network gives the same flow."""
    # Imported here: only this fallback needs scipy, and importing it costs ~0.4 s and ~20 MB.
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    graph = csr_matrix((capacities.astype(np.int32), (tails, heads)), shape=(nodes, nodes))
    result = maximum_flow(graph, SOURCE, SINK, method="dinic")
    return int(result.flow_value), result.flow.tocsr()
