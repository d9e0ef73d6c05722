"""Workload client: read a ring from a mounted ConfigMap directory. No Kubernetes dependency.

    from controller.client import MountedRing
    ring = MountedRing("/etc/ring", me="node-a/scraper")   # or address="10.1.2.3", port=9090
    if ring.is_mine(target):            # owned by this member (any replica)
        scrape(target)
    ring.refresh()                      # cheap: a stat; reloads after kubelet swaps the files

Any other language needs only md5 and ring.json: ``shard = uint64_be(md5(key)[8:16]) mod shards``,
``owners = [members[i].id for i in assignment[shard]]``, plus every ``handover`` entry's member
whose ``shards`` hold that shard (a previous owner still serving it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from controller.core import ringfile
from controller.core.ring import shard_of


class RingVersion:
    """One immutable ring version."""

    def __init__(self, parsed: ringfile.RingFile):
        self.file = parsed
        self.assignment = parsed.assignment
        self._ids = [m.id for m in self.assignment.members]
        self._rows = self.assignment.table.tolist()

    @classmethod
    def from_text(cls, text: str) -> RingVersion:
        return cls(ringfile.parse(text))

    @property
    def version(self) -> int:
        return self.file.version

    @property
    def source_index(self) -> int:
        """The source's position when this version was made: Consul's index, etcd's revision, a
        change count for ZooKeeper and Kubernetes (ring.json keeps its first name,
        ``consulIndex``, so that existing readers keep working)."""
        return self.file.source_index

    @property
    def shards(self) -> int:
        return self.assignment.shards

    @property
    def members(self) -> list[str]:
        return list(self._ids)

    def shard(self, key: str) -> int:
        return shard_of(key, self.shards)

    def owners(self, key: str) -> list[str]:
        """Every owner of the key's shard, primary first, then any previous owner still serving
        it while it is handed over."""
        shard = self.shard(key)
        return [*(self._ids[i] for i in self._rows[shard]), *self.file.handed_over(shard)]

    def owner(self, key: str) -> str:
        return self.owners(key)[0]

    def shards_of(self, member: str) -> list[int]:
        """The shards this member serves: its own, and those it still serves while they are
        handed over (a draining member owns none)."""
        owned = [] if member in self.file.draining else self.assignment.shards_of(member)
        handed = self.file.handover.get(member, ())
        return sorted({*owned, *handed}) if handed else owned

    def is_mine(self, key: str, me: str) -> bool:
        return me in self.owners(key)

    def member_at(self, address: str, port: int | None = None) -> str | None:
        """The member registered at this address (and port), whatever the ring's identity rule:
        a pod knows its own IP (the downward API's status.podIP) and port without asking."""
        found = [member for member in [*self._ids, *self.file.draining]
                 if (endpoint := self.file.endpoints.get(member)) is not None
                 and endpoint.address == address and (port is None or endpoint.port == port)]
        return found[0] if len(found) == 1 else None


def _ring_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / "ring.json" if path.is_dir() else path


class MountedRing:
    """A ring read from a ConfigMap volume (or any directory holding ring.json).

    Kubelet replaces all files of a ConfigMap volume at once (an atomic symlink swap), so a reload
    always sees one consistent version. ``refresh()`` only stats the file unless it changed.
    """

    def __init__(self, path: str | os.PathLike, me: str | None = None,
                 on_change: Callable[[RingVersion], None] | None = None, *,
                 address: str | None = None, port: int | None = None):
        """``me`` is this member's identity; or give the ``address`` (and ``port``) it
        registered, and the member at that endpoint is looked up in each ring version."""
        self.path = _ring_path(path)
        self.me = me
        self.address, self.port = address, port
        self.on_change = on_change
        self._stamp: tuple[int, int, int] | None = None
        self.ring: RingVersion
        self.refresh()

    def _stat(self) -> tuple[int, int, int]:
        info = os.stat(self.path)  # follows kubelet's ..data symlink to the current version
        return info.st_ino, info.st_mtime_ns, info.st_size

    def refresh(self) -> bool:
        """Reload if the files changed; True (and the callback) when a new ring was loaded."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        ring = RingVersion.from_text(self.path.read_text())
        changed = self._stamp is not None
        self.ring, self._stamp = ring, stamp
        if changed and self.on_change:
            self.on_change(ring)
        return changed

    def owner(self, key: str) -> str:
        return self.ring.owner(key)

    def owners(self, key: str) -> list[str]:
        return self.ring.owners(key)

    def shards_of(self, member: str | None = None) -> list[int]:
        return self.ring.shards_of(member or self._me())

    def is_mine(self, key: str) -> bool:
        return self.ring.is_mine(key, self._me())

    def _me(self) -> str:
        if self.me:
            return self.me
        if self.address:
            found = self.ring.member_at(self.address, self.port)
            if found is None:
                raise LookupError(f"no single member of ring version {self.ring.version} is "
                                  f"registered at {self.address}:{self.port or '*'}")
            return found
        raise ValueError("MountedRing(me=...) or MountedRing(address=...) is needed to ask "
                         "about this member")


def ownership_table(ring: RingVersion) -> str:
    """Per member: shards owned and share, like dskit's ring page."""
    total = ring.shards * ring.assignment.spec.replication
    loads = ring.assignment.loads
    width = max([len("MEMBER")] + [len(m) for m in ring.members])
    lines = [f"ring version {ring.version}: {len(ring.members)} members, {ring.shards} shards, "
             f"replicationFactor {ring.assignment.spec.replication}, "
             f"algorithm {ring.assignment.spec.algorithm.value}",
             f"{'MEMBER':<{width}}  {'SHARDS':>6}  {'SHARE':>7}"]
    for member in ring.members:
        lines.append(f"{member:<{width}}  {loads[member]:>6}  {100 * loads[member] / total:>6.2f}%")
    return "\n".join(lines)
