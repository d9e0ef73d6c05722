"""Exact placement of vacancies by maximum flow, for the rare cases the greedy walk cannot solve.

Network: source -> shard (its vacant slots) -> (shard, zone) (room under the zone cap) -> member
(once per shard, if it does not already own it) -> sink (what the member must still take to reach
its low quota) or -> pool -> sink (one optional rounding-up each, as many as the total allows).
A flow that saturates every vacancy fills them all without touching a kept placement, with every
member's load inside [low, high].
"""

from __future__ import annotations

from collections import deque

import numpy as np

from .quotas import Quotas

_MAX_EDGES = 2_000_000  # beyond this the greedy fallbacks are cheaper than an exact answer


class _Network:
    def __init__(self) -> None:
        self.head: list[int] = []
        self.cap: list[int] = []
        self.adjacent: list[list[int]] = []

    def node(self) -> int:
        self.adjacent.append([])
        return len(self.adjacent) - 1

    def edge(self, a: int, b: int, capacity: int) -> int:
        self.head += [b, a]
        self.cap += [capacity, 0]
        self.adjacent[a].append(len(self.head) - 2)
        self.adjacent[b].append(len(self.head) - 1)
        return len(self.head) - 2

    def max_flow(self, source: int, sink: int) -> int:
        total = 0
        while True:
            parent_edge = [-1] * len(self.adjacent)
            parent_edge[source] = -2
            queue = deque([source])
            while queue and parent_edge[sink] == -1:
                node = queue.popleft()
                for e in self.adjacent[node]:
                    nxt = self.head[e]
                    if self.cap[e] > 0 and parent_edge[nxt] == -1:
                        parent_edge[nxt] = e
                        queue.append(nxt)
            if parent_edge[sink] == -1:
                return total
            node = sink
            while node != source:
                e = parent_edge[node]
                self.cap[e] -= 1
                self.cap[e ^ 1] += 1
                node = self.head[e ^ 1]
            total += 1


def fill_by_flow(owners: np.ndarray, bounds: Quotas, zones: np.ndarray, cap: int) -> bool:
    """Fill every vacant slot (-1) of ``owners`` in place; False if no such filling exists."""
    n = len(bounds.target)
    held = np.bincount(owners[owners >= 0], minlength=n)
    vacant_shards = np.nonzero((owners < 0).any(axis=1))[0]
    if vacant_shards.size * n > _MAX_EDGES:
        return False
    vacancies = int((owners < 0).sum())
    must = [max(0, bounds.low[i] - int(held[i])) for i in range(n)]
    optional = [max(0, bounds.high[i] - max(int(held[i]), bounds.low[i])) for i in range(n)]
    pool_size = vacancies - sum(must)
    if pool_size < 0 or pool_size > sum(optional):
        return False
    net = _Network()
    source, sink, pool = net.node(), net.node(), net.node()
    member_node = [net.node() for _ in range(n)]
    for i in range(n):
        if must[i]:
            net.edge(member_node[i], sink, must[i])
        if optional[i]:
            net.edge(member_node[i], pool, optional[i])
    net.edge(pool, sink, pool_size)
    placements: list[tuple[int, int, int]] = []  # (edge, shard, member)
    members_by_zone: dict[int, list[int]] = {}
    for i in range(n):
        members_by_zone.setdefault(int(zones[i]), []).append(i)
    for shard in vacant_shards.tolist():
        row = owners[shard]
        present = row[row >= 0]
        shard_node = net.node()
        net.edge(source, shard_node, int((row < 0).sum()))
        for zone, inside in members_by_zone.items():
            room = cap - int((zones[present] == zone).sum())
            if room <= 0:
                continue
            zone_node = net.node()
            net.edge(shard_node, zone_node, room)
            for member in inside:
                if member not in present and (must[member] or optional[member]):
                    placements.append((net.edge(zone_node, member_node[member], 1), shard, member))
    if net.max_flow(source, sink) != vacancies:
        return False
    for edge, shard, member in placements:
        if net.cap[edge] == 0:
            slot = int(np.nonzero(owners[shard] < 0)[0][0])
            owners[shard, slot] = member
    return True
