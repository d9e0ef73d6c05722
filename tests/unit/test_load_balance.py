"""Properties of balancing by load (controller/core/ring/loadbalance.py, issue #26): valid rings,
the budget, no moves within the tolerance, determinism, only vacancies filled, and the moves
against an exhaustive search on small rings."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from controller.core.ring import Member, RingSpec, plan
from controller.core.ring.loadbalance import (
    VACANT,
    fair_shares,
    fill_by_load,
    imbalance,
    member_loads,
    rebalance,
    welcome,
)
from controller.core.ring.quotas import zone_cap, zone_of

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def rings(draw):
    """A count-balanced ring from the engine, heavy-tailed shard loads, weights and zones."""
    n = draw(st.integers(2, 12))
    replication = draw(st.integers(1, min(3, n)))
    shards = draw(st.integers(4, 256))
    zoned = draw(st.booleans())
    members = [Member(f"m{i}", weight=draw(st.sampled_from([1, 1, 2, 0.5])),
                      zone=f"z{i % 3}" if zoned else None) for i in range(n)]
    assignment = plan(members, RingSpec(shards, replication))
    rng = random.Random(draw(st.integers(0, 1 << 30)))
    loads = np.array([rng.paretovariate(1.1) * (0 if rng.random() < 0.05 else 1)
                      for _ in range(shards)])
    names = sorted({zone_of(m) for m in assignment.members})
    zones = np.array([names.index(zone_of(m)) for m in assignment.members])
    weights = np.array([m.weight for m in assignment.members], dtype=float)
    return assignment.table.copy(), loads, weights, zones, zone_cap(members, replication), \
        assignment.members


def valid(table: np.ndarray, zones: np.ndarray, cap: int) -> bool:
    for row in table.tolist():
        if len(set(row)) != len(row) or min(row) < 0:
            return False
        if max(np.bincount(zones[row]).tolist()) > cap:
            return False
    return True


@FAST
@given(rings(), st.sampled_from([0.05, 0.1, 0.25]), st.integers(0, 40))
def test_a_rebalance_keeps_the_ring_valid_within_its_budget_and_never_worse(ring, tolerance,
                                                                           budget):
    table, loads, weights, zones, cap, _ = ring
    result = rebalance(table, loads, weights, zones, cap, tolerance, budget)
    assert valid(result.owners, zones, cap)
    assert len(result.moves) <= budget
    assert int((result.owners != table).sum()) == len(result.moves)  # moves are net changes
    assert result.after <= result.before + 1e-9
    fair = fair_shares(loads, weights, table.shape[1])
    assert abs(imbalance(member_loads(result.owners, loads, len(weights)), fair)
               - result.after) < 1e-9
    again = rebalance(table, loads, weights, zones, cap, tolerance, budget)
    assert np.array_equal(again.owners, result.owners) and again.moves == result.moves


@FAST
@given(rings(), st.sampled_from([0.05, 0.1, 0.25]))
def test_within_the_tolerance_nothing_moves_so_a_steady_load_never_oscillates(ring, tolerance):
    table, loads, weights, zones, cap, _ = ring
    first = rebalance(table, loads, weights, zones, cap, tolerance, 10_000)
    if first.after <= 1 + tolerance:
        second = rebalance(first.owners, loads, weights, zones, cap, tolerance, 10_000)
        assert second.moves == () and np.array_equal(second.owners, first.owners)
    else:  # it says why when one shard alone is too heavy for any member
        fair = fair_shares(loads, weights, table.shape[1])
        if loads.max() > (1 + tolerance) * fair.max():
            assert first.too_heavy == int(np.argmax(loads))


@FAST
@given(rings())
def test_a_lost_members_shards_go_to_the_least_loaded_and_nothing_else_moves(ring):
    table, loads, weights, zones, _, members = ring
    assume(table.shape[1] < len(members))
    cap = zone_cap(members[1:], table.shape[1])  # what the members left can spread
    # Member 0 is gone: the table is indexed over the members left, its places vacant.
    holed = np.where(table == 0, VACANT, table - 1)
    filled = holed.copy()
    moves = fill_by_load(filled, loads, weights[1:], zones[1:], cap)
    assert {(m.shard, m.slot) for m in moves} == {tuple(x) for x in np.argwhere(table == 0)}
    assert np.array_equal(filled[holed != VACANT], holed[holed != VACANT])
    assert valid(filled, zones[1:], cap)
    # Each vacancy, heaviest first, went to a member with the lowest ratio that could take it.
    fair = fair_shares(loads, weights[1:], table.shape[1])
    running = member_loads(holed, loads, len(weights) - 1)
    for move in moves:
        row = filled[move.shard]
        allowed = [m for m in range(len(weights) - 1) if m == move.target or (
            m not in row and np.bincount(zones[1:][[*row[row != move.target], m]]).max() <= cap)]
        ratios = (running + loads[move.shard]) / fair
        assert ratios[move.target] <= min(ratios[m] for m in allowed) + 1e-9
        running[move.target] += loads[move.shard]


def brute_force_fewest(owners: np.ndarray, loads: np.ndarray, n: int, tolerance: float,
                       deepest: int) -> int | None:
    """The fewest single-replica moves (R = 1) that meet the tolerance, by breadth-first search."""
    fair = fair_shares(loads, np.ones(n), 1)

    def meets(state: tuple[int, ...]) -> bool:
        return imbalance(member_loads(np.array(state)[:, None], loads, n), fair) <= 1 + tolerance
    frontier = {tuple(owners[:, 0].tolist())}
    seen = set(frontier)
    for depth in range(deepest + 1):
        if any(meets(state) for state in frontier):
            return depth
        following = set()
        for state in frontier:
            for shard in range(len(state)):
                for member in range(n):
                    moved = state[:shard] + (member,) + state[shard + 1:]
                    if moved not in seen:
                        seen.add(moved)
                        following.add(moved)
        frontier = following
    return None


def test_moves_against_an_exhaustive_search_on_small_rings():
    """Finding the fewest moves is bin packing; the greedy steps (single moves, then swaps, then
    putting back what was not needed) are measured against the optimum on 300 small rings."""
    rng = random.Random(7)
    feasible = missed = extra = 0
    for _ in range(300):
        n, shards = rng.randint(2, 3), rng.randint(3, 6)
        loads = np.array([rng.paretovariate(1.2) for _ in range(shards)])
        owners = np.array([[rng.randrange(n)] for _ in range(shards)])
        fewest = brute_force_fewest(owners, loads, n, 0.1, 4)
        if fewest is None:
            continue
        feasible += 1
        result = rebalance(owners, loads, np.ones(n), np.arange(n), 1, 0.1, 100)
        if result.after > 1.1 + 1e-9:
            missed += 1
        else:
            extra += len(result.moves) - fewest
            assert len(result.moves) >= fewest
    assert feasible > 80
    # Measured when written: of 112 rings where 4 moves or fewer meet the tolerance, 1 was
    # missed and 6 took one move more than the optimum (108 took exactly the fewest).
    assert missed <= max(1, feasible // 50) and extra <= feasible // 10


@FAST
@given(rings(), st.sampled_from([0.05, 0.1, 0.25]))
def test_a_member_that_joins_takes_its_share_at_once_and_only_it_receives(ring, tolerance):
    """``welcome``: like a join when balancing by count, but by load: only the new member
    receives shards, it ends within the tolerance of its fair share (unless no shard it may
    take evens it out), never above it, and the ring stays valid."""
    table, loads, weights, zones, cap, members = ring
    n = len(members)
    grown = np.append(weights, 1.0)
    zones_grown = np.append(zones, zones.max() + 1)  # a zone of its own: every shard may take it
    filled = table.copy()
    moves = welcome(filled, loads, grown, zones_grown, cap, [n], tolerance)
    assert all(move.target == n for move in moves)
    assert int((filled != table).sum()) == len(moves)
    assert valid(filled, zones_grown, cap)
    fair = fair_shares(loads, grown, table.shape[1])
    carried = member_loads(filled, loads, n + 1)
    assert carried[n] <= (1 + tolerance) * fair[n] + 1e-9
    if carried[n] < (1 - tolerance) * fair[n] - 1e-9:
        # Short of its share: then no single shard of any member would even it out further.
        for shard in range(len(loads)):
            for owner in filled[shard].tolist():
                if owner == n or n in filled[shard] or loads[shard] <= 0:
                    continue
                raised = (carried[n] + loads[shard]) / fair[n]
                lowered = (carried[owner] - loads[shard]) / fair[owner]
                assert raised > 1 + tolerance + 1e-9 or \
                    min(raised, lowered) <= carried[n] / fair[n] + 1e-9
    again = table.copy()
    assert welcome(again, loads, grown, zones_grown, cap, [n], tolerance) == moves


def test_plan_by_load_moves_only_what_leaves_and_what_the_newcomer_takes():
    from controller.core.ring.engine import plan_by_load
    spec = RingSpec(256)
    members = [Member(f"m{i}") for i in range(4)]
    before = plan(members, spec)
    rng = np.random.default_rng(3)
    loads = rng.pareto(1.2, 256) + 1.0
    # m1 leaves: only its shards move, each to a member that may take it, least loaded first.
    after = plan_by_load([m for m in members if m.id != "m1"], spec, before, loads, 0.1)
    stayed = [s for s in range(256) if before.owners[s] != ("m1",)]
    assert all(after.owners[s] == before.owners[s] for s in stayed)
    # m4 joins: only m4 receives, and it carries about its fair share of the load.
    joined = plan_by_load([*members, Member("m4")], spec, before, loads, 0.1)
    changed = [s for s in range(256) if joined.owners[s] != before.owners[s]]
    assert changed and all(joined.owners[s] == ("m4",) for s in changed)
    share = loads[[s for s in range(256) if joined.owners[s] == ("m4",)]].sum() / loads.sum()
    assert 0.9 * 0.2 <= share <= 1.1 * 0.2
    # The count engine would have given m4 its count quota instead, whatever the shards carry.
    counted = plan([*members, Member("m4")], spec, before)
    assert counted.loads["m4"] in (51, 52)
