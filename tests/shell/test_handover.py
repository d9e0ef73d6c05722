"""Make-before-break: planned moves keep their previous owner serving until the new owner
acknowledges (or the timeout passes); losses move at once. Pure, then through the worker with
fakes of its adapters."""

from __future__ import annotations

import asyncio

from controller.client import parse
from controller.core import ringfile
from controller.core.acks import Ack
from controller.core.handover import planned_moves, progress, receivers, released
from controller.core.render import configmap_data
from controller.core.ring import Member, RingSpec, plan
from tests.shell.fakes import setup, spec


def ring_of(ids, previous=None, version=1, shards=32):
    assignment = plan([Member(i) for i in ids], RingSpec(shards=shards),
                      previous.assignment if previous else None)
    return ringfile.RingFile(assignment=assignment, version=version)


def ack(member, ring, version=None, reload="ok"):
    return Ack(lease=f"r.{member}", ring="r", member=member,
               version=ring.version if version is None else version, ring_hash=ring.hash,
               reload=reload, applied_at="t")


def test_a_join_hands_over_exactly_the_moved_shards_from_their_live_owners():
    before = ring_of(["a", "b", "c"])
    after = ring_of(["a", "b", "c", "d"], before, version=2)
    moves = planned_moves(before, after.assignment, ["a", "b", "c", "d"])
    moved = {s for s, (o, n) in enumerate(zip(before.assignment.owners, after.assignment.owners,
                                              strict=True)) if o != n}
    assert moved and {s for shards in moves.values() for s in shards} == moved
    for member, shards in moves.items():
        assert all(member in before.assignment.owners[s] for s in shards)
        assert all(after.assignment.owners[s] == ("d",) for s in shards)
    # A lost member has nobody to hand over: its shards move at once.
    lost = ring_of(["a", "b"], before, version=2)
    assert "c" not in planned_moves(before, lost.assignment, ["a", "b"])
    # A new shard count renumbers shards: nothing to hand over.
    assert planned_moves(before, ring_of(["a", "b", "c", "d"], shards=64).assignment,
                         "abcd") == {}


def test_during_a_handover_both_owners_serve_the_shard_everywhere_it_is_read():
    before = ring_of(["a", "b", "c"])
    after = ring_of(["a", "b", "c", "d"], before, version=2)
    handing = ringfile.RingFile(assignment=after.assignment, version=2,
                                handover=planned_moves(before, after.assignment, "abcd"))
    parsed = ringfile.parse(ringfile.render(handing))
    assert parsed == handing and parsed.hash == after.hash  # same assignment, same hash
    version = parse(ringfile.render(parsed))
    old_owner, shards = next(iter(handing.handover.items()))
    assert set(shards) <= set(version.shards_of(old_owner))
    assert set(shards) <= set(version.shards_of("d"))
    data = configmap_data(handing, prometheus_relabel=True)
    keep = data[f"relabel.{old_owner}.yaml"].rsplit("regex: ", 1)[1].strip().strip("'")
    assert {int(s) for s in keep.split("|")} == set(version.shards_of(old_owner))
    assert data[f"member.{old_owner}"].split() == [str(s) for s in version.shards_of(old_owner)]


def test_a_draining_member_keeps_serving_what_it_hands_over():
    before = ring_of(["a", "b", "c"])
    after = ring_of(["a", "b"], before, version=2)
    moves = planned_moves(before, after.assignment, ["a", "b", "c"])  # c is draining
    assert set(moves) == {"c"} and moves["c"] == tuple(before.assignment.shards_of("c"))
    draining = ringfile.RingFile(assignment=after.assignment, version=2, draining=("c",),
                                 handover=moves)
    assert parse(ringfile.render(draining)).shards_of("c") == list(moves["c"])


def test_a_handover_ends_when_every_receiver_acknowledged_or_on_timeout():
    before = ring_of(["a", "b", "c"])
    after = ring_of(["a", "b", "c", "d"], before, version=2)
    handing = ringfile.RingFile(assignment=after.assignment, version=2,
                                handover=planned_moves(before, after.assignment, "abcd"))
    assert receivers(handing) == ["d"]
    assert progress(handing, [], since=0, now=10, timeout=60).done is None
    assert progress(handing, [ack("d", before)], 0, 10, 60).done is None  # an older assignment
    assert progress(handing, [ack("d", handing, reload="failed")], 0, 10, 60).done is None
    assert progress(handing, [ack("d", handing)], 0, 10, 60).done == "Acknowledged"
    late = progress(handing, [], 0, 60, 60)
    assert (late.done, late.waiting_for) == ("TimedOut", ("d",))
    assert released(handing, 3).handover == {} and released(handing, 3).hash == handing.hash


def test_the_worker_publishes_the_handover_then_releases_it_on_acknowledgement():
    async def scenario():
        s = setup(spec(handover={"timeout": "30s"}))
        acks: dict[str, Ack] = {}
        s.worker.acks = acks
        await s.step()
        s.sources.members(3)
        await s.step()
        acks["r.web-0"] = ack("web-0", s.kube.published())  # members run the ring agent
        s.sources.members(4)
        assert await s.step() == 30.0  # the handover's timeout is the next deadline
        handing = s.kube.published()
        assert handing.version == 2 and handing.handover
        status = s.kube.ring["status"]["handover"]
        assert status["waitingFor"] == ["web-3"] and status["ringVersion"] == 2
        # The new owner's agent applied it: the previous owners let go, in one more version.
        acks["r.web-3"] = ack("web-3", handing)
        s.worker.acks_changed()
        s.clock.advance(1)  # acknowledgements arriving together make one pass
        await s.step()
        done = s.kube.published()
        assert (done.version, done.handover, done.hash) == (3, {}, handing.hash)
        assert s.kube.ring["status"]["lastHandover"]["completedBy"] == "Acknowledged"
        assert s.kube.ring["status"].get("handover") is None  # dropped (null in the patch)
        assert ("Normal", "HandoverComplete") in s.kube.events
        assert await s.step() is None and s.kube.published().version == 3  # nothing more
    asyncio.run(scenario())


def test_without_an_acknowledgement_the_handover_ends_at_the_timeout_and_says_so():
    async def scenario():
        s = setup(spec(handover={"timeout": "30s"}))
        await s.step()
        s.sources.members(3)
        await s.step()
        s.worker.acks = {"r.web-0": ack("web-0", s.kube.published())}
        s.sources.members(4)
        await s.step()
        assert s.kube.ring["status"]["lastChange"]["added"] == 1
        s.clock.now += 29
        await s.step()
        assert s.kube.published().handover  # not yet
        s.clock.now += 1
        await s.step()
        assert s.kube.published().version == 3 and not s.kube.published().handover
        last = s.kube.ring["status"]["lastHandover"]
        assert (last["completedBy"], last["waitedFor"]) == ("TimedOut", ["web-3"])
        assert ("Warning", "HandoverTimedOut") in s.kube.events
        assert s.kube.ring["status"]["lastChange"]["added"] == 1  # the join's, not the release's
        # A loss moves at once: no handover.
        s.sources.members(2)
        await s.step()
        assert s.kube.published().version == 4 and not s.kube.published().handover
    asyncio.run(scenario())


def test_acknowledgements_arriving_together_make_one_pass():
    async def scenario():
        s = setup(spec())
        for _ in range(50):
            s.worker.acks_changed()
        assert s.worker.ack_events == 0
        s.clock.advance(0.2)
        assert s.worker.ack_events == 0
        s.clock.advance(0.1)
        assert s.worker.ack_events == 1
        s.worker.acks_changed()  # a later acknowledgement: another pass
        s.clock.advance(1)
        assert s.worker.ack_events == 2
    asyncio.run(scenario())


def test_without_any_agent_moves_complete_at_once():
    async def scenario():
        s = setup(spec(handover={"timeout": "30s"}))
        await s.step()
        s.sources.members(3)
        await s.step()
        s.sources.members(4)
        assert await s.step() is None  # no timer: nothing to wait for
        assert s.kube.published().version == 2 and not s.kube.published().handover
    asyncio.run(scenario())


def test_a_handover_held_up_by_a_problem_waits_without_spinning():
    async def scenario():
        s = setup(spec(handover={"timeout": "30s"}, stabilization={
            "window": "0s", "maxDelay": "0s", "maxMemberLossPercent": 10}))
        s.worker.acks = {"r.x": Ack(lease="r.x", ring="r", member="web-0", version=0,
                                    ring_hash="", reload="ok", applied_at="t")}
        await s.step()
        s.sources.members(3)
        await s.step()
        s.sources.members(4)
        await s.step()
        assert s.kube.published().handover
        s.sources.members(1)  # most members vanish at once: MemberLoss keeps the ring
        s.clock.now += 60  # past the handover's timeout
        assert await s.step() is None  # no requeue at 0 s: no busy loop
        assert s.kube.condition("Degraded") == ("True", "MemberLoss")
    asyncio.run(scenario())
