"""Weighted rendezvous (highest random weight) hashing: stateless, top-R members per shard.

score(shard, member) = weight / -ln(u), u = uniform (0, 1) from
mix64(shard position XOR hash64(id)).
"""

from __future__ import annotations

import numpy as np

from controller.core.ring.hashing import mix64_array, shard_positions

_CHUNK_CELLS = 1 << 22  # bound memory: shards per chunk * members


def assign_rendezvous(hashes: np.ndarray, weights: np.ndarray, shards: int,
                      replication: int) -> np.ndarray:
    positions = shard_positions(shards)
    owners = np.empty((shards, replication), dtype=np.int64)
    step = max(1, _CHUNK_CELLS // max(1, hashes.size))
    for begin in range(0, shards, step):
        block = positions[begin:begin + step]
        mixed = mix64_array(block[:, None] ^ hashes[None, :])
        uniform = ((mixed >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
        score = weights[None, :] / -np.log(uniform)
        if replication == 1:
            owners[begin:begin + step, 0] = np.argmax(score, axis=1)
            continue
        top = np.argpartition(-score, replication - 1, axis=1)[:, :replication]
        top_scores = np.take_along_axis(score, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        owners[begin:begin + step] = np.take_along_axis(top, order, axis=1)
    return owners
