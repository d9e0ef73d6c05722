"""The ring engine's entry point: members + spec (+ previous owners) -> Assignment. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from controller.core.ring import loadbalance
from controller.core.ring.balanced import assign_balanced, drop_invalid
from controller.core.ring.model import Algorithm, Assignment, Member, RingSpec, validate_members
from controller.core.ring.quotas import zone_cap, zone_indices
from controller.core.ring.rendezvous import assign_rendezvous
from controller.core.ring.vnodes import VnodeRing, member_hashes


def plan(members: Sequence[Member], spec: RingSpec,
         previous: Assignment | None = None) -> Assignment:
    """Compute shard -> owners.

    ``previous`` (the assignment published before) lets ``balanced`` keep every placement
    that is still valid; it is ignored when its shard count differs, and by the stateless
    algorithms.
    """
    ordered = validate_members(members, spec)
    if spec.algorithm is Algorithm.BALANCED:
        table = assign_balanced(ordered, spec.shards, spec.replication,
                                _as_indices(previous, ordered, spec))
    elif spec.algorithm is Algorithm.CONSISTENT:
        table = VnodeRing(member_hashes(ordered), spec.virtual_nodes).first_distinct(
            spec.shards, spec.replication)
    else:
        weights = np.array([m.weight for m in ordered], dtype=np.float64)
        table = assign_rendezvous(member_hashes(ordered), weights, spec.shards, spec.replication)
    return Assignment(members=tuple(ordered), table=table, spec=spec)


def plan_by_load(members: Sequence[Member], spec: RingSpec, previous: Assignment,
                 shard_load: np.ndarray, tolerance: float) -> Assignment:
    """A new membership when balancing by load (``algorithm: balanced``): every placement that
    stays valid is kept, the shards of members that left go to the least loaded members
    (``fill_by_load``), and members that joined take their share of the load at once
    (``welcome``); no other shard moves. Counts as ``plan`` when the shard count changed, and
    when a zone rule leaves a vacancy no member may fill by load."""
    ordered = validate_members(members, spec)
    table = _as_indices(previous, ordered, spec)
    if table is None or spec.algorithm is not Algorithm.BALANCED:
        return plan(members, spec, previous)
    zones = zone_indices(ordered)
    cap = zone_cap(ordered, spec.replication)
    weights = np.array([m.weight for m in ordered], dtype=np.float64)
    drop_invalid(table, zones, cap)
    try:
        loadbalance.fill_by_load(table, shard_load, weights, zones, cap)
    except ValueError:
        return plan(members, spec, previous)
    before = set(previous.ids)
    joined = [i for i, member in enumerate(ordered) if member.id not in before]
    if joined:
        loadbalance.welcome(table, shard_load, weights, zones, cap, joined, tolerance)
    return Assignment(members=tuple(ordered), table=table, spec=spec)


def rebalance_by_load(assignment: Assignment, shard_load: np.ndarray, tolerance: float,
                      budget: int) -> tuple[Assignment, loadbalance.Rebalance]:
    """The same members, with at most ``budget`` shard replicas moved to even out their load
    (``loadbalance.rebalance``)."""
    members = assignment.members
    weights = np.array([m.weight for m in members], dtype=np.float64)
    found = loadbalance.rebalance(assignment.table, shard_load, weights, zone_indices(members),
                                  zone_cap(members, assignment.spec.replication), tolerance,
                                  budget)
    if not found.moves:
        return assignment, found
    return Assignment(members=members, table=found.owners, spec=assignment.spec), found


def work(spec: RingSpec, members: int) -> int:
    """About what ``plan`` costs, in one unit for every algorithm (roughly 15 ns of a core):
    consistent builds and sorts members x virtual nodes points (~36 bytes each, the memory to
    watch), rendezvous scores every shard against every member, balanced fills shard replicas."""
    if spec.algorithm is Algorithm.CONSISTENT:
        return 8 * members * spec.virtual_nodes
    if spec.algorithm is Algorithm.RENDEZVOUS:
        return spec.shards * members
    return spec.shards * spec.replication + members


def _as_indices(previous: Assignment | None, members: Sequence[Member],
                spec: RingSpec) -> np.ndarray | None:
    if previous is None or previous.shards != spec.shards:
        return None
    table = previous.table_for([m.id for m in members])[:, :spec.replication]
    if table.shape[1] < spec.replication:
        padding = np.full((spec.shards, spec.replication - table.shape[1]), -1, dtype=np.int64)
        table = np.hstack([table, padding])
    return table
