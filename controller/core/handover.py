"""Make-before-break for planned moves. Pure.

When a shard moves while its previous owner is still there (a member joins or starts draining,
weights or zones change), the previous owner keeps serving it beside the new owner: the new ring
version lists it under ``handover``. Once every new owner of those shards has acknowledged a
version holding this assignment (its ring agent's Lease), or the ring's handover timeout has
passed, the next version drops the ``handover`` entries and the previous owners let go. A shard
whose owner is gone has nobody to hand it over, so losses move at once, as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.core.acks import Ack
from controller.core.ring import Assignment
from controller.core.ringfile import RingFile


def planned_moves(previous: RingFile | None, assignment: Assignment,
                  present: Iterable[str]) -> dict[str, tuple[int, ...]]:
    """Previous owner -> the shards it must keep serving: each shard that owner served in
    ``previous`` (owned, or still handing over) and does not own in ``assignment``, for owners
    that are still ``present`` (members or draining). A new shard count renumbers every shard:
    nothing is handed over then."""
    if previous is None or previous.assignment.shards != assignment.shards:
        return {}
    alive = set(present)
    before = previous.assignment.owners
    after = assignment.owners
    kept: dict[str, set[int]] = {}
    for shard, (old, new) in enumerate(zip(before, after, strict=True)):
        for member in {*old, *previous.handed_over(shard)} - set(new):
            if member in alive:
                kept.setdefault(member, set()).add(shard)
    return {member: tuple(sorted(shards)) for member, shards in sorted(kept.items())}


def receivers(ring: RingFile) -> list[str]:
    """The new owners of the shards being handed over: those who must acknowledge."""
    shards = {shard for handed in ring.handover.values() for shard in handed}
    owners = ring.assignment.owners
    return sorted({member for shard in shards for member in owners[shard]})


@dataclass(frozen=True)
class Progress:
    waiting_for: tuple[str, ...]  # receivers that have not acknowledged yet
    done: str | None  # "Acknowledged" or "TimedOut" when the handover may end now


def progress(ring: RingFile, acks: Iterable[Ack], since: float, now: float,
             timeout: float) -> Progress:
    """How the handover in ``ring`` stands. A receiver has acknowledged when its agent applied
    this assignment (the same ring hash) at this version or later, and its reload succeeded."""
    applied = {ack.member for ack in acks
               if ack.ring_hash == ring.hash and ack.version >= ring.version and ack.healthy}
    failed = {ack.member for ack in acks if not ack.healthy and ack.version >= ring.version}
    waiting = tuple(m for m in receivers(ring) if m not in applied or m in failed)
    if not waiting:
        return Progress((), "Acknowledged")
    return Progress(waiting, "TimedOut" if now >= since + timeout else None)


def released(ring: RingFile, version: int) -> RingFile:
    """The same assignment with the handover over: the previous owners let go."""
    return RingFile(assignment=ring.assignment, version=version,
                    source_index=ring.source_index, shard_ring=ring.shard_ring,
                    service=ring.service, endpoints=ring.endpoints, draining=ring.draining)


def shards_in(handover: Mapping[str, tuple[int, ...]]) -> int:
    return len({shard for shards in handover.values() for shard in shards})
