"""Hash functions of the ring, defined so that any language can reproduce them.

* ``hash64(text)``: the last 8 bytes of ``md5(text)`` read as a big-endian unsigned 64-bit integer.
  This is exactly what Prometheus' ``hashmod`` relabel action computes, so
  ``shard_of(key, K) = hash64(key) % K`` equals ``hashmod`` with ``modulus: K``.
* ``mix64(x)``: the SplitMix64 finaliser, used to spread a member's virtual nodes and shard
  positions over the 64-bit ring without one md5 call per virtual node.
"""

from __future__ import annotations

import hashlib

import numpy as np

MASK64 = (1 << 64) - 1
GOLDEN64 = 0x9E3779B97F4A7C15


def hash64(text: str) -> int:
    """Bytes 8..16 of md5(text), big-endian: Prometheus' hashmod before the modulus."""
    return int.from_bytes(hashlib.md5(text.encode("utf-8")).digest()[8:16], "big")


def shard_of(key: str, shards: int) -> int:
    """The shard of a key: ``uint64_be(md5(key)[8:16]) mod shards`` (Prometheus ``hashmod``)."""
    if shards < 1:
        raise ValueError("shards must be at least 1")
    return hash64(key) % shards


def mix64(x: int) -> int:
    """SplitMix64 finaliser on one integer (reference version of :func:`mix64_array`)."""
    x = (x + GOLDEN64) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def mix64_array(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser over a uint64 array (wrapping arithmetic, as in C)."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x += np.uint64(GOLDEN64)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def shard_positions(shards: int) -> np.ndarray:
    """Position of shard s on the ring: ``mix64(s)``."""
    return mix64_array(np.arange(shards, dtype=np.uint64))


def vnode_positions(member_hashes: np.ndarray, vnodes: int) -> np.ndarray:
    """Positions of virtual node i of each member: ``mix64(hash64(id) + i * GOLDEN64)``.

    Returns an array of shape (members, vnodes).
    """
    steps = np.arange(vnodes, dtype=np.uint64) * np.uint64(GOLDEN64)
    with np.errstate(over="ignore"):
        raw = member_hashes.astype(np.uint64)[:, None] + steps[None, :]
    return mix64_array(raw)
