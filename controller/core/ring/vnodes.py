"""A 64-bit hash ring of virtual nodes (the seed's classic consistent-hash ring), in numpy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from controller.core.ring.hashing import hash64, shard_positions, vnode_positions
from controller.core.ring.model import Member


def member_hashes(members: Sequence[Member]) -> np.ndarray:
    return np.fromiter((hash64(m.id) for m in members), dtype=np.uint64, count=len(members))


class VnodeRing:
    """Virtual nodes of every member, sorted by position; ``owner[i]`` is a member index."""

    def __init__(self, hashes: np.ndarray, vnodes: int):
        positions = vnode_positions(hashes, vnodes).ravel()
        owners = np.repeat(np.arange(len(hashes), dtype=np.int64), vnodes)
        # Members arrive sorted by id, so even a (2^-64 unlikely) position tie sorts the same way
        # for the same membership.
        order = np.argsort(positions)
        self.position = positions[order]
        self.owner = owners[order]

    def first_distinct(self, shards: int, replication: int) -> np.ndarray:
        """Owners of each shard: the first ``replication`` distinct members clockwise."""
        start = np.searchsorted(self.position, shard_positions(shards), side="left")
        size = len(self.position)
        owners = np.full((shards, replication), -1, dtype=np.int64)
        owners[:, 0] = self.owner[start % size]
        if replication == 1:
            return owners
        found = np.ones(shards, dtype=np.int64)
        cursor = start + 1
        pending = np.arange(shards)
        while pending.size:
            candidate = self.owner[cursor[pending] % size]
            rows = owners[pending]
            fresh = ~(rows == candidate[:, None]).any(axis=1)
            take = pending[fresh]
            owners[take, found[take]] = candidate[fresh]
            found[take] += 1
            cursor[pending] += 1
            pending = pending[found[pending] < replication]
        return owners
