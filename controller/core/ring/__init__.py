"""The ring engine: pure shard assignment (no I/O, no Kubernetes or Consul)."""

from controller.core.ring.engine import plan, work
from controller.core.ring.hashing import hash64, shard_of
from controller.core.ring.model import Algorithm, Assignment, Member, RingError, RingSpec

__all__ = ["Algorithm", "Assignment", "Member", "RingError", "RingSpec", "hash64",
           "plan", "shard_of", "work"]
