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
