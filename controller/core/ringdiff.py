"""What changed between two versions of a ring: who joined and left, and which shards moved from
whom to whom. Pure; ``python -m controller ring diff`` prints it."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from controller.core.ringfile import RingFile


@dataclass(frozen=True)
class Move:
    source: str  # the owner that let go ("" for a replica that did not exist before)
    target: str  # the owner that took over ("" for a replica that no longer exists)
    shards: tuple[int, ...]


@dataclass(frozen=True)
class RingDiff:
    before: int  # ring versions
    after: int
    joined: tuple[str, ...]
    left: tuple[str, ...]  # owned shards before: what the Resharded event calls removed
    draining: tuple[str, ...]  # started draining in ``after``
    drained: tuple[str, ...]  # were draining (owning nothing) and are gone
    moves: tuple[Move, ...]  # by (source, target)
    moved: int  # shard replicas that changed owner
    resized: bool  # the shard count differs: shard numbers do not compare

    def lines(self) -> list[str]:
        text = [f"ring version {self.before} -> {self.after}"]
        for what, names in (("joined", self.joined), ("left", self.left),
                            ("draining", self.draining), ("gone after draining", self.drained)):
            if names:
                text.append(f"{what}: {', '.join(names)}")
        if self.resized:
            text.append("the shard count changed: every shard is placed anew")
            return text
        text.append(f"moved: {self.moved} shard replicas")
        for move in self.moves:
            text.append(f"  {move.source or '(new replica)'} -> {move.target or '(dropped)'}: "
                        f"{len(move.shards)} shards: {', '.join(map(str, move.shards))}")
        return text


def diff(before: RingFile, after: RingFile) -> RingDiff:
    old, new = before.assignment, after.assignment
    old_ids, new_ids = set(old.ids), set(new.ids)
    joined = tuple(sorted(new_ids - old_ids - set(before.draining)))
    left = tuple(sorted(old_ids - new_ids - set(after.draining)))
    draining = tuple(sorted(set(after.draining) - set(before.draining)))
    drained = tuple(sorted(set(before.draining) - new_ids - set(after.draining)))
    if old.shards != new.shards:
        return RingDiff(before.version, after.version, joined, left, draining, drained, (), 0,
                        True)
    moves: dict[tuple[str, str], list[int]] = defaultdict(list)
    for shard, (was, now) in enumerate(zip(old.owners, new.owners, strict=True)):
        lost = sorted(set(was) - set(now))
        gained = sorted(set(now) - set(was))
        # With replicas, pair what one owner lost with what another gained, in order; a change
        # of the replication factor leaves some on one side only.
        for i in range(max(len(lost), len(gained))):
            source = lost[i] if i < len(lost) else ""
            target = gained[i] if i < len(gained) else ""
            moves[(source, target)].append(shard)
    found = tuple(Move(s, t, tuple(shards)) for (s, t), shards in sorted(moves.items()))
    # Counted as the operator counts it (status.lastChange.movedShards, the Resharded event).
    moved = new.moved_from(old)
    return RingDiff(before.version, after.version, joined, left, draining, drained, found, moved,
                    False)
