"""Workload client: read a ring from a mounted ConfigMap directory. No Kubernetes dependency.

    from controller.client import MountedRing
    ring = MountedRing("/etc/ring", me="scraper-2")
    if ring.is_mine(target):            # owned by this member (any replica)
        scrape(target)
    ring.refresh()                      # cheap: a stat; reloads after kubelet swaps the files

Any other language needs only md5 and ring.json: ``shard = uint64_be(md5(key)[8:16]) mod shards``,
``owners = [members[i].id for i in assignment[shard]]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from . import ringfile
from .ring import shard_of


class Ring:
    """One immutable ring version."""

    def __init__(self, parsed: ringfile.RingFile):
        self.file = parsed
        self.assignment = parsed.assignment
        self._ids = [m.id for m in self.assignment.members]
        self._rows = self.assignment.table.tolist()

    @classmethod
    def from_text(cls, text: str) -> "Ring":
        return cls(ringfile.parse(text))

    @property
    def version(self) -> int:
        return self.file.version

    @property
    def shards(self) -> int:
        return self.assignment.shards

    @property
    def members(self) -> list[str]:
        return list(self._ids)

    def shard(self, key: str) -> int:
        return shard_of(key, self.shards)

    def owners(self, key: str) -> list[str]:
        """Every owner of the key's shard, primary first."""
        return [self._ids[i] for i in self._rows[self.shard(key)]]

    def owner(self, key: str) -> str:
        return self.owners(key)[0]

    def shards_of(self, member: str) -> list[int]:
        return self.assignment.shards_of(member)

    def is_mine(self, key: str, me: str) -> bool:
        return me in self.owners(key)


def _ring_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / "ring.json" if path.is_dir() else path


class MountedRing:
    """A ring read from a ConfigMap volume (or any directory holding ring.json).

    Kubelet replaces all files of a ConfigMap volume at once (an atomic symlink swap), so a reload
    always sees one consistent version. ``refresh()`` only stats the file unless it changed.
    """

    def __init__(self, path: str | os.PathLike, me: str | None = None,
                 on_change: Callable[[Ring], None] | None = None):
        self.path = _ring_path(path)
        self.me = me
        self.on_change = on_change
        self._stamp: tuple[int, int, int] | None = None
        self.ring: Ring
        self.refresh()

    def _stat(self) -> tuple[int, int, int]:
        info = os.stat(self.path)  # follows kubelet's ..data symlink to the current version
        return info.st_ino, info.st_mtime_ns, info.st_size

    def refresh(self) -> bool:
        """Reload if the files changed; True (and the callback) when a new ring was loaded."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        ring = Ring.from_text(self.path.read_text())
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
        if not self.me:
            raise ValueError("MountedRing(me=...) is needed to ask about this member")
        return self.me


def ownership_table(ring: Ring) -> str:
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
