"""The publishing decision, as a pure function: which ring should be published, given what was
published, the membership the source reports now, and the ring's guards (stabilization window,
minMembers, maxMemberLossPercent). The pass planner calls it; problems carry a ``Reason``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from controller.core import ringfile
from controller.core.membership import Membership
from controller.core.ring import Assignment, RingError, plan
from controller.core.ring.engine import plan_by_load, rebalance_by_load
from controller.core.spec import RingConfig


def membership_source(config: RingConfig) -> dict[str, Any]:
    """Where the members come from, as recorded in ring.json's "service"."""
    source = config.query.record()
    source["identity"] = config.identity
    return _with_rules(source, config)


def _with_rules(source: dict[str, Any], config: RingConfig) -> dict[str, Any]:
    if config.weight_from:
        source["weightFrom"] = config.weight_from
    if config.zone_from:
        source["zoneFrom"] = config.zone_from
    if config.drain_from:
        source["drainFrom"] = config.drain_from
    if config.balance.by_load:  # (so that switching it is a spec change, applied at once)
        source["balanceBy"] = "load"
    return source


class Reason(str, Enum):
    """Why a ring is Degraded: the reason of its Degraded and Ready conditions and its events."""

    INVALID_SPEC = "InvalidSpec"
    UNKNOWN_CONNECTION = "UnknownConnection"
    SECRET_MISSING = "SecretMissing"
    CONFIGMAP_CONFLICT = "ConfigMapConflict"
    RING_TOO_LARGE = "RingTooLarge"
    INVALID_MEMBERSHIP = "InvalidMembership"
    INVALID_FILTER = "InvalidFilter"
    INVALID_QUERY = "InvalidQuery"
    NOT_ENOUGH_MEMBERS = "NotEnoughMembers"
    MEMBER_LOSS = "MemberLoss"
    DATACENTER_NOT_ALLOWED = "DatacenterNotAllowed"
    TOKEN_REQUIRED = "TokenRequired"
    LIMIT_EXCEEDED = "LimitExceeded"

    def __str__(self) -> str:
        return self.value


# Members named in a Resharded event and in status.lastChange; the counts say the rest.
SHOWN_MEMBERS = 10


def kept(previous: ringfile.RingFile | None) -> str:
    """What a problem leaves published: said only when there is something to keep."""
    return "The last published ring is kept." if previous is not None else \
        "No ring is published until then."


@dataclass(frozen=True)
class Problem:
    reason: Reason
    message: str


@dataclass(frozen=True)
class Decision:
    ring: ringfile.RingFile | None  # the ring that should be in the ConfigMap (None: nothing yet)
    changed: bool = False  # ``ring`` is a new version
    moved: int = 0
    added: int = 0
    removed: int = 0
    problem: Problem | None = None  # Degraded: the last good ring stays
    wait_until: float | None = None  # stabilizing: decide again at this (monotonic) time
    joined: tuple[str, ...] = ()  # who joined and left with this version, sorted
    left: tuple[str, ...] = ()
    observed: int | None = None  # members the source reports now (None: not known)
    rebalanced: Rebalanced | None = None  # this version moves shards for their load

    @property
    def afresh(self) -> bool:
        """A new version planned without the one before it (its ConfigMap deleted while the
        operator was away): every member counts as joined, and what moved is not known."""
        ring = self.ring
        return ring is not None and self.changed and ring.version > 1 and not self.removed \
            and self.added == len(ring.assignment.members)


@dataclass(frozen=True)
class Rebalanced:
    """A rebalance by load: how many shard replicas it moves, what share of the load moves with
    them, and the imbalance (highest load over fair share) before and after."""

    moves: int
    load_moved: float  # a fraction of the total replica load
    before: float
    after: float


def decide(config: RingConfig, membership: Membership, source_index: int,
           previous: ringfile.RingFile | None, *, shard_ring: dict[str, str],
           now: float, seen_at: float, pending_since: float | None,
           last_version: int = 0, not_before: float | None = None,
           own: bool = False, shard_load: np.ndarray | None = None) -> Decision:
    """``seen_at``: when the source first reported this membership; ``pending_since``: when the
    membership first differed from the published one; ``last_version``: the highest version ever
    published (from status), so numbering continues even if the ConfigMap was lost;
    ``not_before``: no membership change is published before this time (the operator's minimum
    interval between versions, whatever the window); ``own``: ``previous`` is the ring this
    operator published itself (so, unchanged inputs, it is the answer as it is);
    ``shard_load``: the measured load of each shard of ``previous`` when the ring balances by
    load (None: nothing measured yet)."""
    members = membership.members
    guard = config.stabilization
    needed = max(guard.min_members, config.ring_spec.replication, 1)
    service = membership_source(config)
    if len(members) < needed:
        what = "minMembers" if guard.min_members >= config.ring_spec.replication else \
            "replicationFactor"
        # (Members draining are counted apart: the source's empty hint, about instances it
        # hides, would point the wrong way.)
        hint = f", and {len(membership.draining)} more draining (spec.members.drainFrom)" \
            if membership.draining else config.query.words.empty_hint if not members else ""
        return Decision(previous, problem=Problem(
            Reason.NOT_ENOUGH_MEMBERS,
            f"{config.query.members_found(len(members))}{hint}; "
            f"{what} needs at least {needed}. {kept(previous)}"), observed=len(members))
    if previous is not None:
        before = {m.id for m in previous.assignment.members}
        after = {m.id for m in members}
        # A member that starts draining leaves the assignment on purpose: not a loss.
        removed, added = before - after - set(membership.draining), after - before
        # A new source, query, identity or membership rule names other members (or renames
        # them): that is a spec change, not members leaving. And members replaced by as many
        # (new addresses after a restart) are no loss either: counted net, a one-member ring
        # whose member was replaced was held for ever.
        repointed = dict(previous.service) != service
        lost = len(removed) - len(added)
        if before and not repointed and \
                lost * 100 > guard.max_member_loss_percent * len(before):
            joined = f" and only {len(added)} joined" if added else ""
            return Decision(previous, problem=Problem(
                Reason.MEMBER_LOSS,
                f"{len(removed)} of {len(before)} members left at once{joined}, more than "
                f"maxMemberLossPercent={guard.max_member_loss_percent}. The last ring is kept; "
                f"if this is intended, raise spec.stabilization.maxMemberLossPercent."),
                observed=len(members))
        # A new query or membership rule is a spec change: it applies at once, like shards.
        spec_changed = previous.assignment.spec != config.ring_spec or \
            dict(previous.service) != service
        members_changed = tuple(previous.assignment.members) != members or \
            previous.draining != membership.draining or \
            dict(previous.endpoints) != dict(membership.endpoints)
        if own and not members_changed and not spec_changed and \
                previous.shard_ring == shard_ring:
            # Nothing the ring is made of changed (a wake by an acknowledgement, a recheck): the
            # published ring is the answer, and the engine is not run again to confirm it.
            return Decision(previous, observed=len(members))
        if members_changed and not spec_changed and guard.window > 0:
            ready_at = seen_at + guard.window
            if pending_since is not None:
                ready_at = min(ready_at, pending_since + guard.max_delay)
            if now < ready_at:
                return Decision(previous, wait_until=ready_at, observed=len(members))
        if members_changed and not spec_changed and not_before is not None and now < not_before:
            return Decision(previous, wait_until=not_before, observed=len(members))
    else:
        removed, added = set(), {m.id for m in members}
    try:
        if previous is not None and config.balance.by_load and \
                previous.assignment.shards == config.ring_spec.shards:
            # Unmeasured shards weigh the same: the count engine would undo what load moved.
            assignment = plan_by_load(
                members, config.ring_spec, previous.assignment,
                shard_load if shard_load is not None else np.ones(config.ring_spec.shards),
                config.balance.tolerance)
        else:
            assignment = _planned(membership, config, previous)
    except RingError as error:
        return Decision(previous, problem=Problem(Reason.INVALID_SPEC, str(error)),
                        observed=len(members))
    candidate = ringfile.RingFile(
        assignment=assignment, version=previous.version if previous else last_version,
        source_index=previous.source_index if previous else source_index, shard_ring=shard_ring,
        service=service, endpoints=membership.endpoints, draining=membership.draining)
    # Equal RingFiles hold the same ring (the parser round-trips; the member loads shown beside
    # it do not count): nothing to publish.
    if candidate == previous:
        return Decision(previous, observed=len(members))
    published = ringfile.RingFile(
        assignment=assignment, version=max(last_version, candidate.version) + 1,
        source_index=source_index, shard_ring=shard_ring, service=service,
        endpoints=membership.endpoints, draining=membership.draining)
    moved = assignment.moved_from(previous.assignment) if previous else 0
    return Decision(published, changed=True, moved=moved, added=len(added), removed=len(removed),
                    joined=tuple(sorted(added)), left=tuple(sorted(removed)),
                    observed=len(members))


def _planned(membership: Membership, config: RingConfig, previous: ringfile.RingFile | None
             ) -> Assignment:
    """The engine's assignment of the members, once for every ring with the same spec and
    previous ring (a thousand rings over a hundred services start as a hundred computations, and
    share their tables). Equal hashes are equal assignments: members, shards and owners."""
    key = (config.ring_spec, previous.hash if previous is not None else None)
    found = membership.planned.get(key)
    if found is None:
        # (Two planning threads may both compute it: the first one kept is everyone's.)
        found = membership.planned.setdefault(key, plan(
            membership.members, config.ring_spec, previous.assignment if previous else None))
    return found


def rebalance(config: RingConfig, previous: ringfile.RingFile, shard_load: np.ndarray,
              last_version: int, observed: int | None) -> Decision:
    """A rebalance by load of the published ring (the same members): a new version when shards
    should move (``rebalanced`` says how it went either way)."""
    assignment, found = rebalance_by_load(previous.assignment, shard_load,
                                          config.balance.tolerance,
                                          config.balance.budget(
                                              previous.assignment.shards *
                                              previous.assignment.spec.replication))
    total = float(shard_load.sum()) * previous.assignment.spec.replication
    summary = Rebalanced(len(found.moves),
                         sum(move.load for move in found.moves) / total if total > 0 else 0.0,
                         found.before, found.after)
    if not found.moves:
        return Decision(previous, observed=observed, rebalanced=summary)
    published = ringfile.RingFile(
        assignment=assignment, version=max(last_version, previous.version) + 1,
        source_index=previous.source_index, shard_ring=previous.shard_ring,
        service=previous.service, endpoints=previous.endpoints, draining=previous.draining)
    return Decision(published, changed=True, moved=len(found.moves), observed=observed,
                    rebalanced=summary)
