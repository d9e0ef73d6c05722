"""Read and follow a shardring ring: which member serves which key. Standard library only.

    from shardring_client import MountedRing
    ring = MountedRing("/etc/ring", me="scraper-1")     # or address="10.1.2.3", port=9090
    if ring.is_mine(target):                            # serve it: owner, replica or handing over
        scrape(target)
    ring.refresh()                                      # a readlink unless a new version came

The format is specified in docs/ring-format.md: ``shard = uint64_be(md5(key)[8:16]) mod shards``
(Prometheus' hashmod), owners from ``assignment``, previous owners from ``handover``.
"""

from shardring_client._directory import MountedRing, RingFollower, read
from shardring_client._load import load_exposition
from shardring_client._ring import (
           FORMAT,
           KEY_HASH,
           Member,
           Ring,
           RingFormatError,
           load,
           parse,
           shard_of,
)

__version__ = "0.1.0"

__all__ = ["FORMAT", "KEY_HASH", "Member", "MountedRing", "Ring", "RingFollower",
           "RingFormatError", "load", "load_exposition", "parse", "read", "shard_of"]
