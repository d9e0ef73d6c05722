"""status.measuredLoad (issue #26): what the members' agents measured their shards to carry,
from the load reports in their acknowledgement Leases."""

from __future__ import annotations

from dataclasses import replace

from controller.core.acks import Ack
from controller.core.planner import Gathered, plan_pass
from tests.unit.test_status_messages import CONFIG, remembered, ring_object, source_with


def test_the_members_measured_load_is_shown_from_their_fresh_reports():
    """status.measuredLoad (issue #26): the load reports the agents write with their
    acknowledgements, smoothed; shards nobody reported count as the mean; gone once stale."""
    from controller.core import loads
    t0 = "2026-12-02T10:00:00Z"
    first = plan_pass(ring_object(), CONFIG, Gathered(None, source_with("a", "b")), 0.0, t0)
    ring = first.published
    assert "measuredLoad" not in first.status
    a_shards = ring.assignment.shards_of("a")
    report = loads.encode({s: 10.0 for s in a_shards})
    acks = (Ack("lease-a", "r", "a", ring.version, ring.hash, "ok", t0, report, t0),)
    gathered = Gathered(None, source_with("a", "b"), memory=remembered(ring), acks=acks)
    shown = plan_pass(ring_object(first.status), CONFIG, gathered, 1.0, "2026-12-02T10:00:01Z")
    measured = shown.status["measuredLoad"]
    # b's shards were not reported: they count as the mean (10), so the two are even.
    assert measured["imbalance"] == 1.0 and measured["reporting"] == 1
    assert {m["member"] for m in measured["members"]} == {"a", "b"}
    assert shown.memory.loads is not None
    heavy = loads.encode({s: 30.0 if s == a_shards[0] else 10.0 for s in a_shards})
    b_even = loads.encode({s: 10.0 for s in ring.assignment.shards_of("b")})
    at = "2026-12-02T10:10:00Z"
    later = replace(gathered, memory=shown.memory, acks=(
        replace(acks[0], load=heavy, load_at=at),
        Ack("lease-b", "r", "b", ring.version, ring.hash, "ok", t0, b_even, at)))
    skewed = plan_pass(ring_object(shown.status), CONFIG, later, 600.0, "2026-12-02T10:10:00Z")
    assert skewed.status["measuredLoad"]["imbalance"] > 1.0
    assert skewed.status["measuredLoad"]["members"][0]["member"] == "a"
    stale = plan_pass(ring_object(skewed.status), CONFIG, replace(later, memory=skewed.memory),
                      2000.0, "2026-12-02T10:30:00Z")
    assert "measuredLoad" not in stale.status


def test_the_figures_are_written_again_at_most_every_minute_and_follow_a_clock_ahead():
    from controller.core import loads
    t0 = "2026-12-02T10:00:00Z"
    first = plan_pass(ring_object(), CONFIG, Gathered(None, source_with("a", "b")), 0.0, t0)
    ring = first.published

    def acked(load: float, at: str) -> tuple[Ack, ...]:
        return tuple(Ack(f"lease-{m}", "r", m, ring.version, ring.hash, "ok", t0,
                         loads.encode({s: load if m == "a" else 1.0
                                       for s in ring.assignment.shards_of(m)}), at)
                     for m in ("a", "b"))
    # An agent whose clock is an hour ahead: its report counts as measured now.
    ahead = Gathered(None, source_with("a", "b"), memory=remembered(ring),
                     acks=acked(5.0, "2026-12-02T11:00:00Z"))
    shown = plan_pass(ring_object(first.status), CONFIG, ahead, 1.0, t0)
    assert shown.status["measuredLoad"]["reporting"] == 2
    later = replace(ahead, memory=shown.memory, acks=acked(50.0, "2026-12-02T10:00:10Z"))
    soon = plan_pass(ring_object(shown.status), CONFIG, later, 11.0, "2026-12-02T10:00:10Z")
    assert soon.status["measuredLoad"] == shown.status["measuredLoad"]  # within the minute
    minute = plan_pass(ring_object(soon.status), CONFIG, replace(later, memory=soon.memory),
                       61.0, "2026-12-02T10:01:01Z")
    assert minute.status["measuredLoad"]["imbalance"] > shown.status["measuredLoad"]["imbalance"]


def test_a_suspended_ring_shows_no_measured_load_and_a_new_shard_count_starts_over():
    from controller.core import loads
    from controller.core.limits import Access
    from controller.core.planner import prepare
    from controller.core.views import RingObject
    from controller.sources.specs import read_spec
    from tests.unit.test_status_messages import SPEC
    status = {"measuredLoad": {"imbalance": 2.0, "reporting": 1, "members": []}}
    suspended = RingObject("team", "r", "uid-1", 1, {**SPEC, "suspend": True}, status)
    intent = prepare(suspended, {("consul", "default"): Access()}, "t", read_spec)
    assert intent.plan is not None and "measuredLoad" not in intent.plan.status
    old = loads.smooth(None, [loads.Report("a", {3: 900.0}, at=0.0)], 60, shards=16)
    fresh = loads.smooth(old, [loads.Report("a", {3: 1.0}, at=10.0)], 60, shards=32)
    assert fresh.value == {3: 1.0} and fresh.shards == 32
