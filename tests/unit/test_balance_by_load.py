"""Balancing by measured load in the pass planner (issue #26, spec.balance.by: load): rebalances
within the budget and the interval, as planned moves with a handover, until the tolerance is met,
then no move while the load is steady; a lost member moves only its own shards; what the status,
conditions and events say. Passes are driven by a stepping clock."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from controller.core import loads, ringfile
from controller.core.acks import Ack
from controller.core.planner import Gathered, PassPlan, plan_pass
from controller.core.spec import SpecError
from controller.sources.specs import parse_spec
from tests.unit.test_status_messages import condition, source_with

SPEC = {"service": {"name": "svc"}, "shards": 64, "members": {"identity": "id"},
        "stabilization": {"window": "0s", "maxDelay": "0s", "maxMemberLossPercent": 100},
        "balance": {"by": "load", "tolerancePercent": 10, "maxMovesPercent": 10,
                    "interval": "1m"}}
CONFIG = parse_spec("r", SPEC)
MEMBERS = ("a", "b", "c", "d")
# Heavy-tailed: a few shards 20-60x the others.
LOAD = np.array([60.0 if s % 16 == 0 else 20.0 if s % 7 == 0 else 1.0 for s in range(64)])


def wall(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"2026-12-02T{10 + hours:02d}:{minutes:02d}:{rest:02d}Z"


class Ring:
    """One ShardRing passed again and again, as the worker does: status and memory carried."""

    def __init__(self, spec: dict = SPEC, members: tuple[str, ...] = MEMBERS) -> None:
        self.spec, self.config = spec, parse_spec("r", spec)
        self.members = members
        self.status: dict = {}
        self.memory = None
        self.plans: list[PassPlan] = []

    def acks(self, now: float) -> tuple[Ack, ...]:
        """Every member's agent applied the published ring and reports its shards' loads."""
        ring = self.plans[-1].published if self.plans else None
        if ring is None:
            return ()
        def serves(member: str) -> set[int]:
            return {*ring.assignment.shards_of(member), *ring.handover.get(member, ())}
        return tuple(Ack(f"lease-{m}", "r", m, ring.version, ring.hash, "ok", wall(now),
                         loads.encode({s: float(LOAD[s]) for s in serves(m)}),
                         wall(now)) for m in ring.assignment.ids)

    def run(self, now: float, members: tuple[str, ...] | None = None) -> PassPlan:
        from controller.core.views import RingObject
        gathered = Gathered(None, source_with(*(members or self.members)), acks=self.acks(now))
        if self.memory is not None:
            gathered = replace(gathered, memory=self.memory)
        found = plan_pass(RingObject("team", "r", "uid-1", 1, self.spec, self.status),
                          self.config, gathered, now, wall(now))
        self.status, self.memory = found.status, found.memory
        self.plans.append(found)
        return found


def imbalance_of(found: PassPlan) -> float:
    table = found.published.assignment.table
    carried = np.bincount(table.ravel(), weights=np.repeat(LOAD, table.shape[1]),
                          minlength=len(found.published.assignment.members))
    return float(carried.max() / carried.mean())


def test_rebalances_move_within_the_budget_until_the_tolerance_then_never_again():
    ring = Ring()
    first = ring.run(0.0)
    assert first.published.version == 1 and imbalance_of(first) > 1.3  # balanced by count
    watched = ring.run(1.0)  # the first load reports: the interval starts
    assert watched.change is None
    balanced = condition(watched.status, "Balanced")
    assert (balanced["status"], balanced["reason"]) == ("False", "Rebalancing")
    assert watched.requeue_after == pytest.approx(60.0)  # the rebalance comes without an event
    assert ring.run(30.0).change is None  # not before the interval
    now, rebalances = 61.0, 0
    while condition(ring.status, "Balanced")["status"] != "True":
        moved = ring.run(now)
        assert moved.change is not None and moved.change.rebalanced is not None
        rebalances += 1
        assert 0 < moved.change.moved <= 7  # 10 % of 64 replicas
        assert [e.reason for e in moved.events] == ["Rebalanced"]
        last = moved.status["lastRebalance"]
        assert last["ringVersion"] == moved.published.version
        assert last["moves"] == moved.change.moved
        assert last["imbalanceAfter"] < last["imbalanceBefore"]
        # Planned moves: the previous owners keep serving until the new owners acknowledge.
        assert moved.published.handover and condition(moved.status, "Reconciling")["reason"] \
            == "HandingOver"
        released = ring.run(now + 1)  # every agent acknowledged the new version
        assert not released.published.handover and released.change is not None
        assert released.change.rebalanced is None
        assert [e.reason for e in released.events] == ["HandoverComplete"]
        assert ring.run(now + 2).change is None  # and nothing more until the next interval
        now += 61
        assert rebalances < 10
    assert imbalance_of(ring.plans[-1]) <= 1.1
    settled = ring.plans[-1].published.version
    for step in range(10):  # ten more intervals of the same load: nothing moves
        assert ring.run(now + 61 * step).change is None
    assert ring.plans[-1].published.version == settled
    assert condition(ring.status, "Balanced")["reason"] == "WithinTolerance"


def test_a_lost_member_moves_only_its_shards_and_a_new_one_takes_its_share_at_once():
    ring = Ring()
    ring.run(0.0)
    ring.run(1.0)
    now = 61.0
    while condition(ring.status, "Balanced")["status"] != "True":
        ring.run(now)
        ring.run(now + 1)
        now += 61
    before = ring.plans[-1].published.assignment
    lost = ring.run(now, ("a", "b", "d"))
    after = lost.published.assignment
    assert lost.change is not None and lost.change.rebalanced is None
    for shard, owners in enumerate(before.owners):
        if owners != ("c",):
            assert after.owners[shard] == owners, "a shard c did not own moved"
    assert [e.reason for e in lost.events] == ["Resharded"]
    ring.members = ("a", "b", "d")
    after = ring.run(now + 1).published.assignment  # (a rebalance may follow the loss)
    grown = ring.run(now + 2, ("a", "b", "d", "e"))
    joined = grown.published.assignment
    moved = [s for s in range(64) if joined.owners[s] != after.owners[s]]
    assert moved and all(joined.owners[s] == ("e",) for s in moved)
    share = LOAD[moved].sum() / LOAD.sum()
    assert 0.25 * 0.9 <= share <= 0.25 * 1.1  # its fair share, within the tolerance
    assert grown.published.handover  # and its previous owners keep serving until it acknowledges


def test_a_shard_heavier_than_any_allowance_is_named_once_and_count_rings_never_rebalance():
    global LOAD
    saved = LOAD
    try:
        LOAD = np.ones(64)
        LOAD[5] = 200.0  # more than 1.1 x a quarter of everything
        ring = Ring()
        ring.run(0.0)
        first = ring.run(1.0)
        balanced = condition(first.status, "Balanced")
        assert balanced["reason"] == "ShardTooHeavy" and "shard 5 " in balanced["message"]
        assert [e.reason for e in first.events] == ["ShardTooHeavy"]
        assert ring.run(2.0).events == ()  # said once
        # By count (the default), the same reports move nothing and add no condition.
        counted = Ring({**SPEC, "balance": {"by": "count"}})
        counted.run(0.0)
        for now in (1.0, 61.0, 122.0, 183.0):
            assert counted.run(now).change is None
        assert not any(c["type"] == "Balanced" for c in counted.status["conditions"])
    finally:
        LOAD = saved


def test_without_reports_a_load_ring_stays_as_counted_and_says_so():
    ring = Ring()
    ring.acks = lambda now: ()  # no agent reports load
    ring.run(0.0)
    for now in (1.0, 61.0, 122.0):
        assert ring.run(now).change is None
    balanced = condition(ring.status, "Balanced")
    assert (balanced["status"], balanced["reason"]) == ("Unknown", "NoLoadReports")


@pytest.mark.parametrize(("balance", "message"), [
    ({"by": "weight"}, "is not count or load"),
    ({"by": "load", "tolerancePercent": 0}, "not between 1 and 100"),
    ({"by": "load", "maxMovesPercent": 0}, "above 0"),
    ({"by": "load", "interval": "5s"}, "at least 10s"),
    ({"by": "load", "smoothing": "two minutes"}, "spec.balance.smoothing"),
])
def test_a_bad_balance_is_refused_with_what_to_change(balance, message):
    with pytest.raises(SpecError, match=message):
        parse_spec("r", {**SPEC, "balance": balance})


def test_balancing_by_load_needs_the_balanced_algorithm():
    with pytest.raises(SpecError, match="needs algorithm: balanced"):
        parse_spec("r", {**SPEC, "algorithm": "rendezvous"})
    assert parse_spec("r", {**SPEC, "algorithm": "rendezvous", "balance": {"by": "count"}})


def test_ring_json_shows_each_members_load_under_the_version_it_was_made_with():
    ring = Ring()
    ring.run(0.0)
    ring.run(1.0)
    moved = ring.run(61.0)  # the first rebalance
    assert moved.change is not None and moved.change.rebalanced is not None
    shown = json.loads(moved.configmap.data["ring.json"])
    table = moved.published.assignment.table
    carried = np.bincount(table[:, 0], weights=LOAD, minlength=len(MEMBERS))  # R = 1
    assert {m["id"]: m["load"] for m in shown["members"]} == \
        {m: loads.rounded(carried[i]) for i, m in enumerate(sorted(MEMBERS))}
    assert shown["loadImbalance"] == round(carried.max() / carried.mean(), 3)
    # Read back (an operator restart), the same ring with the same loads: the same text.
    again = ringfile.parse(moved.configmap.data["ring.json"])
    assert ringfile.render(again) == moved.configmap.data["ring.json"]
    # Loads are shown beside the ring, not part of it: a drift alone is no new version.
    assert again == replace(again, member_load={m: 1.0 for m in MEMBERS})
    counted = Ring({**SPEC, "balance": {"by": "count"}})
    counted.run(0.0)
    first = counted.run(1.0, members=(*MEMBERS, "e"))
    assert first.change is not None
    assert all("load" not in m for m in json.loads(first.configmap.data["ring.json"])["members"])


def test_a_member_whose_fair_share_is_too_small_for_a_float_neither_blocks_balance_nor_overflows():
    # (Carrying nothing over a share of 0 was NaN: never "within the tolerance", so the ring said
    # Rebalancing for ever; carrying something was Infinity in status.measuredLoad.)
    from controller.core.balance import balance_condition
    from controller.core.ring import Member, RingSpec, plan
    from controller.core.ring.loadbalance import IMBALANCE_MAX, fair_shares, imbalance
    config = parse_spec("r", {"service": {"name": "s"}, "shards": 4,
                              "balance": {"by": "load"}})
    members = [Member("a"), Member("b"), Member("tiny", weight=5e-324)]
    ring = ringfile.RingFile(plan(members, RingSpec(4)))
    carried = {m.id: 0.0 for m in members}
    shard_load = np.array([0.0] * 4)
    for shard, owner in enumerate(ring.assignment.owners):
        shard_load[shard] = 0.0 if owner[0] == "tiny" else 0.1  # (a share of it: below 5e-324)
        carried[owner[0]] += shard_load[shard]
    assert carried["tiny"] == 0 < carried["a"] and carried["a"] == carried["b"]
    balanced = balance_condition(config, ring, shard_load)
    assert balanced is not None and (balanced.status, balanced.reason) == (True, "WithinTolerance")
    weights = np.array([m.weight for m in members])
    over = imbalance(np.array([1.0, 1.0, 1.0]), fair_shares(np.array([3.0]), weights, 1))
    assert over == IMBALANCE_MAX
