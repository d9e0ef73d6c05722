"""The ring client, under the name readers first imported it by: ``shardring_client`` (its own
distribution in clients/python, standard library only) does the work; see its README and
docs/ring-format.md.

    from controller.client import MountedRing     # the same as: from shardring_client import ...
"""

from __future__ import annotations

from shardring_client import (
    FORMAT,
    KEY_HASH,
    Member,
    MountedRing,
    Ring,
    RingFollower,
    RingFormatError,
    load,
    parse,
    read,
    shard_of,
)

__all__ = ["FORMAT", "KEY_HASH", "Member", "MountedRing", "Ring", "RingFollower",
           "RingFormatError", "RingVersion", "load", "ownership_table", "parse", "read",
           "shard_of"]


class RingVersion(Ring):
    """``Ring``'s first name (kept for existing readers)."""

    @staticmethod
    def from_text(text: str | bytes) -> Ring:
        return parse(text)


def ownership_table(ring: Ring) -> str:
    """Per member: shards owned and share, like dskit's ring page."""
    total = ring.shards * ring.replication_factor
    counts = ring.shard_counts()
    width = max([len("MEMBER")] + [len(m) for m in ring.members])
    lines = [f"ring version {ring.version}: {len(ring.members)} members, {ring.shards} shards, "
             f"replicationFactor {ring.replication_factor}, algorithm {ring.algorithm}",
             f"{'MEMBER':<{width}}  {'SHARDS':>6}  {'SHARE':>7}"]
    for member in ring.members:
        lines.append(f"{member:<{width}}  {counts[member]:>6}  "
                     f"{100 * counts[member] / total:>6.2f}%")
    return "\n".join(lines)
