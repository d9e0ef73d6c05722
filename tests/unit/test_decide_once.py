"""Decide once: a pass over an unchanged membership takes the ring this operator published as it
is, without running the engine again — but only its own ring: one edited by someone else (or
written by another version) is planned again."""

from __future__ import annotations

import dataclasses
import json

from controller.core import decision, ringfile
from controller.core.limits import Access
from controller.core.memory import RingMemory, Verified
from controller.core.planner import Gathered, plan_pass, prepare
from controller.core.source_state import Snapshot, SourceState
from controller.core.views import RingObject, text_digest, view_from_dict
from controller.sources.specs import read_spec
from controller.testing.builders import instances

SPEC = {"service": {"name": "web"}, "shards": 16,
        "stabilization": {"window": "0s", "maxDelay": "0s"}}
CONNECTIONS = {("consul", "default"): Access()}


def published(monkeypatch, edit=None):
    """A first pass publishes; then the engine is counted, and the ConfigMap is as published
    (or as ``edit`` changed its ring.json)."""
    ring = RingObject("team", "r", "uid", 1, SPEC, {})
    config = prepare(ring, CONNECTIONS, "t", read_spec).config
    source = SourceState(Snapshot(1, instances(4), 0.0))
    first = plan_pass(ring, config, Gathered(None, source), 1.0, "t")
    data = dict(first.configmap.data)
    if edit:
        data["ring.json"] = edit(data["ring.json"])
    view = view_from_dict({"metadata": {"name": "r-ring", "resourceVersion": "1",
                                        "labels": dict(first.configmap.labels),
                                        "ownerReferences": [dict(first.configmap.owner)]},
                           "data": data})
    runs = []
    engine = decision.plan
    monkeypatch.setattr(decision, "plan", lambda *a, **k: runs.append(1) or engine(*a, **k))
    gathered = Gathered(view, source, memory=RingMemory(
        last_published_digest=text_digest(first.configmap.data["ring.json"]),
        last_published_ring=first.published,
        verified=Verified("r-ring", "1", False), last_publish=1.0))
    again = plan_pass(RingObject("team", "r", "uid", 1, SPEC, first.status), config, gathered,
                      50.0, "t")
    return first, again, runs


def test_an_unchanged_membership_keeps_the_operators_own_ring_without_the_engine(monkeypatch):
    _first, again, runs = published(monkeypatch)
    assert runs == [] and again.configmap is None and again.change is None


def everything_to_one_member(text: str, rehash: bool = True) -> str:
    document = json.loads(text)
    document["assignment"] = [[0] for _ in document["assignment"]]
    if rehash:  # (as whoever edited it knew to)
        document["ringHash"] = ringfile.parse(ringfile.canonical_json(
            {**document, "ringHash": ""})).hash
    return ringfile.canonical_json(document)


def test_a_ring_edited_by_someone_else_is_planned_again(monkeypatch):
    first, again, runs = published(monkeypatch, everything_to_one_member)
    assert runs == [1]  # the engine ran
    assert again.configmap is not None and again.change is not None
    assert again.published.assignment.owners != ((0,),) * 16
    loads = again.published.assignment.loads
    assert max(loads.values()) - min(loads.values()) <= 1  # balanced again


def another_rings(text: str) -> str:
    document = json.loads(text)
    document["ring"]["name"] = "other"
    return ringfile.canonical_json(document)


def test_an_edit_that_keeps_the_old_hash_or_another_rings_file_is_replaced_by_the_published(
        monkeypatch):
    # (Both were taken as the published ring: the first planned again as a new version, while
    # agents applied the edit; the second kept, for agents to apply another ring's split.)
    for edit in (lambda text: everything_to_one_member(text, rehash=False), another_rings):
        monkeypatch.undo()
        first, again, runs = published(monkeypatch, edit)
        assert runs == [] and again.change is None
        assert again.configmap is not None and again.configmap.data == first.configmap.data
        assert again.published == first.published


def test_rings_reading_one_snapshot_share_one_reading_of_its_members(monkeypatch):
    """The members of a snapshot are read once per membership rules, whichever ring (or pass)
    asks: rings over one service share the reading (and its Member objects), a ring waiting out
    its window does not read it again, and an unreadable membership is refused to each."""
    from controller.core import membership, planner
    reads = []
    original = membership.members_from
    monkeypatch.setattr(planner, "members_from", lambda *a: reads.append(a[1:]) or original(*a))
    snapshot = Snapshot(1, instances(4), 0.0)
    plans = []
    for name in ("a", "b", "c"):
        ring = RingObject("team", name, f"uid-{name}", 1, SPEC, {})
        config = prepare(ring, CONNECTIONS, "t", read_spec).config
        plans.append(plan_pass(ring, config, Gathered(None, SourceState(snapshot)), 1.0, "t"))
        plan_pass(ring, config, Gathered(None, SourceState(snapshot)), 2.0, "t")
    assert len(reads) == 1
    first, second = (p.published.assignment.members for p in plans[:2])
    assert all(x is y for x, y in zip(first, second, strict=True))
    by_address = {**SPEC, "members": {"identity": "address"}}
    ring = RingObject("team", "d", "uid-d", 1, by_address, {})
    config = prepare(ring, CONNECTIONS, "t", read_spec).config
    plan_pass(ring, config, Gathered(None, SourceState(snapshot)), 1.0, "t")
    assert len(reads) == 2  # other rules, another reading

    same_address = Snapshot(2, tuple(dataclasses.replace(i, address="10.0.0.9", port=1)
                                     for i in instances(2)), 0.0)
    for name in ("e", "f"):
        ring = RingObject("team", name, f"uid-{name}", 1, by_address, {})
        config = prepare(ring, CONNECTIONS, "t", read_spec).config
        plan = plan_pass(ring, config, Gathered(None, SourceState(same_address)), 1.0, "t")
        ready = next(c for c in plan.status["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "InvalidMembership" and "share identity" in ready["message"]
    assert len(reads) == 3


def test_rings_reading_one_snapshot_with_one_spec_share_one_computation(monkeypatch):
    """A thousand rings over a hundred services start as a hundred engine runs, and share their
    tables; another spec, or another previous ring, is its own computation."""
    runs = []
    engine = decision.plan
    monkeypatch.setattr(decision, "plan", lambda *a, **k: runs.append(a[1]) or engine(*a, **k))
    source = SourceState(Snapshot(1, instances(4), 0.0))

    def first_publish(name: str, spec: dict) -> ringfile.RingFile:
        ring = RingObject("team", name, f"uid-{name}", 1, spec, {})
        config = prepare(ring, CONNECTIONS, "t", read_spec).config
        return plan_pass(ring, config, Gathered(None, source), 1.0, "t").published
    one, two = first_publish("one", SPEC), first_publish("two", SPEC)
    assert len(runs) == 1 and one.assignment is two.assignment
    assert one.shard_ring != two.shard_ring  # each its own ring all the same
    other = first_publish("three", {**SPEC, "shards": 32})
    assert len(runs) == 2 and other.assignment.shards == 32
    unshared = plan_pass(RingObject("team", "four", "uid-4", 1, SPEC, {}), prepare(
        RingObject("team", "four", "uid-4", 1, SPEC, {}), CONNECTIONS, "t", read_spec).config,
        Gathered(None, SourceState(Snapshot(1, instances(4), 0.0))), 1.0, "t").published
    assert len(runs) == 3 and unshared.assignment == one.assignment  # a new snapshot: its own


def test_members_returning_after_a_held_outage_wait_out_the_window_not_max_delay():
    """maxDelay bounds churn that keeps a change from holding; a guard holding the last ring
    through an outage is no such churn. (Its clock ran through the outage, so the first
    membership the guards let through was published at once: two versions, shards moved twice,
    as instances came back one by one.)"""
    spec = {"service": {"name": "web"}, "shards": 16,
            "stabilization": {"window": "3s", "maxDelay": "10s"}}
    ring = RingObject("team", "r", "uid", 1, spec, {})
    config = prepare(ring, CONNECTIONS, "t", read_spec).config
    everyone = instances(3)
    memory = RingMemory()
    status: dict = {}

    def a_pass(now: float, present: tuple, seen_at: float):
        nonlocal memory, status
        plan = plan_pass(RingObject("team", "r", "uid", 1, spec, status), config,
                         Gathered(None, SourceState(Snapshot(1, present, seen_at)),
                                  memory=memory), now, "t")
        memory, status = plan.memory or memory, plan.status
        return plan
    assert a_pass(1.0, everyone, 1.0).change is not None  # the first ring
    assert a_pass(2.0, everyone[1:], 2.0).requeue_after == 3.0  # one failed: it waits
    assert a_pass(2.2, (), 2.2).change is None  # then all: NotEnoughMembers, the last ring kept
    assert a_pass(20.0, everyone[:1], 20.0).change is None  # MemberLoss: still kept
    back = a_pass(20.5, everyone[:2], 20.5)  # the guards let this one through: it waits
    assert back.change is None and back.requeue_after == 3.0
    assert a_pass(21.0, everyone, 21.0).change is None  # all back
    assert a_pass(24.0, everyone, 21.0).change is None  # the window held: nothing to publish


def test_after_a_restart_another_rings_file_holding_this_rings_assignment_moves_nothing():
    # (Without the operator's memory the file was refused, and a ring planned from the members
    # alone moved 28 of 64 shards of a ring whose history had moved them before.)
    spec = {**SPEC, "shards": 64}
    ring = RingObject("team", "r", "uid", 1, spec, {})
    config = prepare(ring, CONNECTIONS, "t", read_spec).config
    first = plan_pass(ring, config, Gathered(None, SourceState(Snapshot(1, instances(4), 0.0))),
                      1.0, "t")
    grown = plan_pass(RingObject("team", "r", "uid", 1, spec, first.status), config,
                      Gathered(None, SourceState(Snapshot(2, instances(6), 0.0)),
                               memory=first.memory), 2.0, "t")
    fresh = plan_pass(ring, config, Gathered(None, SourceState(Snapshot(2, instances(6), 0.0))),
                      1.0, "t")
    assert grown.published.assignment != fresh.published.assignment  # (history matters)
    data = dict(grown.configmap.data)
    data["ring.json"] = another_rings(data["ring.json"])
    view = view_from_dict({"metadata": {"name": "r-ring", "resourceVersion": "9",
                                        "labels": dict(grown.configmap.labels),
                                        "ownerReferences": [dict(grown.configmap.owner)]},
                           "data": data})
    restarted = plan_pass(RingObject("team", "r", "uid", 1, spec, grown.status), config,
                          Gathered(view, SourceState(Snapshot(2, instances(6), 0.0))), 60.0, "t")
    assert restarted.change is None and restarted.status["lastChange"] == \
        grown.status["lastChange"]
    assert restarted.configmap is not None and restarted.configmap.data == grown.configmap.data
