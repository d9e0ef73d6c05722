"""The ring engine: pure shard assignment (no I/O, no Kubernetes or Consul)."""

from .engine import plan, work
from .hashing import hash64, shard_of
from .model import Algorithm, Assignment, Member, RingError, RingSpec

__all__ = ["Algorithm", "Assignment", "Member", "RingError", "RingSpec", "hash64",
           "plan", "shard_of", "work"]
