"""The ring worker (the shell) against fakes of its own adapters and a clock that steps: skipped
passes, changes during a pass, stabilization, conflicts, oversized rings, source errors, suspend.
No control plane: these run in about a second."""

from __future__ import annotations

import asyncio
import copy
import json
import logging

import pytest

from controller.core import ringfile
from controller.core.credentials import Token
from controller.core.limits import Limits
from controller.core.source_state import Snapshot, SourceState
from controller.core.views import view_from_dict
from controller.operator.worker import ECHO_PATIENCE
from tests.shell.fakes import (
    NAME,
    NAMESPACE,
    FakeClock,
    FakeKube,
    FakeSources,
    Running,
    Setup,
    setup,
    spec,
    until,
)


async def published_with(s: Setup, members: int) -> None:
    await s.step()  # subscribes; the source has said nothing yet
    s.sources.members(members)
    await s.step()
    assert len(s.kube.published().assignment.members) == members


def test_first_pass_publishes_and_an_unchanged_wake_does_nothing():
    async def scenario():
        s = setup(spec())
        assert await s.step() is None and not s.kube.configmaps  # waiting for the first reply
        s.sources.members(3)
        await s.step()
        assert s.kube.configmap_writes == 1 and s.kube.condition("Ready") == ("True", "Published")
        assert ("Normal", "Resharded") in s.kube.events
        await s.step()  # our own write changed the ConfigMap's version: one confirming pass
        writes, plans, reads = s.kube.status_writes, len(s.plans), s.kube.configmap_reads
        s.observe()  # our own status patch echoing back: same inputs
        await s.step()
        await s.step()
        assert (s.kube.configmap_writes, s.kube.status_writes, len(s.plans)) == (1, writes, plans)
        assert s.kube.configmap_reads == reads == 1  # the cached view, no GET per pass
        assert s.worker.settled
        # A reply that is not a change bumps nothing; a real one publishes version 2.
        s.sources.members(4)
        assert not s.worker.settled  # the membership moved since the last pass started
        await s.step()
        assert s.worker.settled
        assert s.kube.published().version == 2 and s.kube.configmap_writes == 2
    asyncio.run(scenario())


def test_membership_churn_publishes_at_most_once_per_minimum_interval_whatever_the_window():
    async def scenario():
        s = setup(spec(), Limits(min_publish_interval=2.0))
        await published_with(s, 3)
        s.clock.now += 0.5
        s.sources.members(4)
        assert await s.step() == pytest.approx(1.5)  # due 2 s after the last version
        assert s.kube.published().version == 1 and s.kube.condition("Stable")[0] == "False"
        s.clock.now += 1.5
        await s.step()
        assert s.kube.published().version == 2
        assert len(s.kube.published().assignment.members) == 4
        s.kube.edit_spec(shards=32)  # a spec change is not churn: it applies at once
        s.observe()
        await s.step()
        assert s.kube.published().version == 3 and s.kube.published().assignment.shards == 32
    asyncio.run(scenario())


def test_a_change_arriving_during_a_pass_is_not_lost():
    async def scenario():
        s = setup(spec())
        await published_with(s, 3)
        s.kube.during_write = lambda: s.sources.members(5)  # Consul moves mid-write
        s.sources.members(4)
        await s.step()
        assert len(s.kube.published().assignment.members) == 4
        s.kube.during_write = None
        await s.step()  # woken by the change during the write: a new pass, not a skip
        assert len(s.kube.published().assignment.members) == 5
    asyncio.run(scenario())


def test_stabilization_window_then_max_delay_under_churn():
    async def scenario():
        s = setup(spec(window="10s", max_delay="30s"))
        await published_with(s, 3)  # the first ring is published at once
        s.sources.members(4)
        timeout = await s.step()
        assert timeout == pytest.approx(10) and s.kube.published().version == 1
        assert s.kube.condition("Stable") == ("False", "Stabilizing")
        s.clock.now += 10
        await s.step()
        assert s.kube.published().version == 2 and s.kube.condition("Stable")[0] == "True"
        # Churn every 5 s never holds for 10 s; maxDelay publishes 30 s after the first change.
        start = s.clock.now
        for count in (5, 6, 5, 6, 5, 6, 5):
            s.sources.members(count)
            await s.step()
            if s.kube.published().version == 3:
                break
            s.clock.now += 5
        assert s.kube.published().version == 3 and s.clock.now - start == pytest.approx(30)
    asyncio.run(scenario())


def test_a_configmap_conflict_rereads_and_runs_the_pass_again_at_once():
    async def scenario():
        s = setup(spec())
        await published_with(s, 3)
        s.kube.conflicts.append("configmap")
        s.sources.members(4)
        assert await s.step() == 0  # re-read the ring, run again at once
        assert s.worker.seen is None  # the ConfigMap is read again too
        await s.step()
        assert len(s.kube.published().assignment.members) == 4
        assert s.kube.ring["status"]["members"] == 4 and s.kube.condition("Ready")[0] == "True"
        # Repeated conflicts back off instead of looping.
        s.kube.conflicts.extend(["configmap"] * 3)
        s.sources.members(5)
        assert [await s.step() for _ in range(3)] == [0, 1.0, 2.0]
    asyncio.run(scenario())


def test_a_status_conflict_applies_the_same_status_at_the_fresh_version():
    async def scenario():
        s = setup(spec())
        await published_with(s, 3)
        s.kube.conflicts.append("status")  # kopf annotated the ring meanwhile
        s.sources.members(4)
        assert await s.step() is None  # done in this pass: nothing is planned again
        assert s.kube.ring["status"]["members"] == 4
        assert s.kube.ring["status"]["lastChange"]["added"] == 1  # not lost to the conflict
        # After a spec edit the status is stale: the pass is planned again instead.
        s.kube.conflicts.append("status")
        s.kube.edit_spec(shards=32)  # the conflicting write bumps the generation
        s.sources.members(5)
        assert await s.step() == 0
        s.observe()
        await s.step()
        assert s.kube.ring["status"]["shards"] == 32 and s.kube.published().version == 4
    asyncio.run(scenario())


def test_a_ring_too_large_keeps_the_previous_configmap():
    async def scenario():
        s = setup(spec(outputs={"prometheusRelabel": True}))
        await published_with(s, 3)
        before = dict(s.kube.configmaps[f"{NAME}-ring"])
        s.kube.edit_spec(shards=65536)
        s.observe()
        s.sources.members(200)
        await s.step()
        assert s.kube.configmaps[f"{NAME}-ring"] == before
        assert s.kube.condition("Degraded") == ("True", "RingTooLarge")
        assert ("Warning", "RingTooLarge") in s.kube.events
        assert s.kube.ring["status"]["observedMembers"] == 200  # (kubectl get's OBSERVED)
        s.sources.members(201)  # still too large
        await s.step()
        assert s.kube.configmaps[f"{NAME}-ring"] == before
        assert s.kube.events.count(("Warning", "RingTooLarge")) == 1  # once, not every pass
    asyncio.run(scenario())


def test_source_error_keeps_the_ring_then_recovers():
    async def scenario():
        s = setup(spec())
        await published_with(s, 3)
        last = s.kube.published()
        s.sources.publish(SourceState(last_snapshot(s), error="Consul query failed: Timeout"))
        await s.step()
        assert s.kube.published() == last
        assert s.kube.condition("ConsulReachable") == ("False", "QueryFailed")
        assert s.kube.condition("Ready") == ("False", "ConsulUnreachable")
        s.sources.members(4)
        await s.step()
        assert s.kube.condition("Ready") == ("True", "Published")
        assert len(s.kube.published().assignment.members) == 4
    asyncio.run(scenario())


def last_snapshot(s: Setup) -> Snapshot | None:
    return next(iter(s.sources.watches.values())).state.snapshot


def test_suspend_stops_querying_and_writing():
    async def scenario():
        s = setup(spec())
        await published_with(s, 3)
        s.kube.edit_spec(suspend=True)
        s.observe()
        await s.step()
        assert not s.sources.watches  # no query runs for a suspended ring
        assert s.kube.condition("Ready") == ("False", "Suspended")
        writes = s.kube.configmap_writes
        s.kube.edit_spec(suspend=False, shards=32)
        s.observe()
        await s.step()
        s.sources.members(3)
        await s.step()
        assert s.kube.configmap_writes == writes + 1 and s.kube.published().version == 2
    asyncio.run(scenario())


def test_a_missing_token_secret_is_reported_and_rechecked():
    async def scenario():
        s = setup(spec(consul={"connection": "default",
                               "tokenSecretRef": {"name": "acl", "key": "token"}}))
        assert await s.step() == 30.0  # a Secret appearing is announced by no event
        assert s.kube.condition("Degraded") == ("True", "SecretMissing")
        assert not s.sources.watches
        s.kube.secrets[("acl", "token")] = "s3cret"
        s.clock.now += 30
        await s.step()
        # The token reaches the source typed, and its repr never shows it.
        assert list(s.sources.watches) == [(s.worker.subscription.watch.key[0], Token("s3cret"))]
        assert "s3cret" not in repr(s.sources.watches)
    asyncio.run(scenario())


def test_a_token_with_a_line_break_inside_is_a_secret_problem_not_an_outage():
    async def scenario():
        s = setup(spec(consul={"connection": "default",
                               "tokenSecretRef": {"name": "acl", "key": "token"}}))
        s.kube.secrets[("acl", "token")] = "abc\ndef"  # (the Secret's text is stripped)
        await s.step()
        assert s.kube.condition("Degraded") == ("True", "SecretMissing")
        message = next(c["message"] for c in s.kube.ring["status"]["conditions"]
                       if c["type"] == "Degraded")
        assert "line break" in message and "abc" not in message and not s.sources.watches
    asyncio.run(scenario())


def test_a_heavy_plan_runs_in_the_planning_thread_and_a_light_one_inline():
    from concurrent.futures import ThreadPoolExecutor

    from controller.operator.planning import HEAVY_PLAN

    class Counting(ThreadPoolExecutor):
        submitted = 0

        def submit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            Counting.submitted += 1
            return super().submit(*args, **kwargs)

    async def scenario():
        s = setup({**spec(), "shards": 4096})
        with Counting(max_workers=1) as pool:
            s.worker._planning = pool
            await published_with(s, 3)  # cost 3 x 4096: inline
            assert Counting.submitted == 0
            members = HEAVY_PLAN // 4096 + 1
            s.sources.members(members)
            await s.step()
            assert Counting.submitted == 1
            assert len(s.kube.published().assignment.members) == members
    asyncio.run(scenario())


def test_a_problem_is_warned_once_even_when_an_older_body_arrives_after_the_status_write():
    async def scenario():
        s = setup(spec(service={"name": "missing"}))
        await s.step()  # subscribes
        stale = {**s.kube.ring, "status": {}}  # the ring as an event from before our write shows it
        s.sources.members(0)
        await s.step()
        assert s.kube.condition("Degraded") == ("True", "NotEnoughMembers")
        s.worker.observe(stale)
        s.sources.members(0)  # a reply that changes nothing: the pass runs on the stale body
        await s.step()
        assert s.kube.events.count(("Warning", "NotEnoughMembers")) == 1
        # The problem goes and comes back: warned again.
        s.observe()
        s.sources.members(2)
        await s.step()
        s.observe()
        s.sources.members(0)
        await s.step()
        assert s.kube.events.count(("Warning", "NotEnoughMembers")) == 2
    asyncio.run(scenario())


def test_an_event_from_before_a_status_write_does_not_undo_what_the_write_recorded():
    async def scenario():
        s = setup(spec())
        await published_with(s, 3)
        s.observe()
        stale = copy.deepcopy(s.kube.ring)  # version 1's status, as its echo shows it
        s.sources.members(4)
        await s.step()
        recorded = s.kube.ring["status"]["lastChange"]
        assert recorded["added"] == 1 and s.kube.ring["status"]["ringVersion"] == 2
        s.worker.observe(stale)  # that echo, still on its way, arrives after version 2's write
        s.sources.members(4)  # a reply that changes nothing: a pass runs
        await s.step()
        assert s.kube.ring["status"]["lastChange"] == recorded
        assert s.kube.ring["status"]["ringVersion"] == 2
        # Once an event shows the write, a status that differs is someone else's, and taken.
        s.observe()
        s.kube.ring["status"] = {**s.kube.ring["status"], "ringVersion": 99}
        s.observe()
        assert s.worker.body["status"]["ringVersion"] == 99
    asyncio.run(scenario())


def test_an_event_from_an_older_generation_does_not_bring_its_spec_back():
    async def scenario():
        s = setup(spec())
        await published_with(s, 3)
        s.observe()
        stale = copy.deepcopy(s.kube.ring)  # kopf's event from before the edit, late
        s.kube.edit_spec(shards=32)
        s.observe()
        await s.step()
        assert s.kube.published().assignment.shards == 32
        s.worker.observe(stale)
        s.sources.members(3)
        await s.step()
        assert s.kube.published().assignment.shards == 32 and s.kube.published().version == 2
    asyncio.run(scenario())


def test_a_status_someone_else_wrote_is_taken_once_our_writes_event_is_overdue():
    async def scenario():
        s = setup(spec())
        await published_with(s, 3)
        # A relist skipped our write's own event, and someone wrote the status since.
        s.kube.ring["status"] = {**s.kube.ring["status"], "ringVersion": 99}
        s.kube.ring["metadata"]["resourceVersion"] = "later"
        s.observe()
        assert s.worker.body["status"]["ringVersion"] == 1  # as if from before our write
        s.clock.advance(ECHO_PATIENCE + 1)
        s.observe()
        assert s.worker.body["status"]["ringVersion"] == 99
    asyncio.run(scenario())


def test_a_worker_serving_again_takes_the_status_another_replica_wrote_while_it_was_paused():
    async def scenario():
        s = setup(spec())
        running = Running()
        serving = asyncio.create_task(s.worker.serve(running))
        await until(lambda: s.sources.active())
        s.sources.members(3)
        await until(lambda: s.kube.ring["status"].get("members") == 3)
        running.stop.set()  # paused: the other replica serves the ring now
        await asyncio.wait_for(serving, 1)
        s.kube.ring["status"] = {**s.kube.ring["status"], "members": 7}
        s.kube.ring["metadata"]["resourceVersion"] = "other-replica"
        s.observe()  # (kopf delivers it before it starts the daemon again)
        assert s.worker.body["status"]["members"] == 7
        running = Running()
        serving = asyncio.create_task(s.worker.serve(running))
        await until(lambda: s.sources.active())
        s.sources.members(3)  # the source as before
        await until(lambda: s.kube.ring["status"].get("members") == 3)  # put right
        running.stop.set()
        await asyncio.wait_for(serving, 1)
    asyncio.run(scenario())


def test_a_worker_kopf_stopped_watching_reads_its_ring_before_it_publishes_anything():
    async def scenario():
        s = setup(spec(service={"name": "missing"}))
        await s.step()  # subscribes; never published (nothing would show it gone)
        reads = []

        async def gone(*_args):  # the CRD deleted: the ring with it, and no deletion event
            reads.append(1)
            return None
        s.kube.read_ring = gone  # type: ignore[method-assign]
        s.worker.unwatched()
        s.sources.members(3)  # the way is clear: it would publish now
        await s.step()
        assert reads == [1] and s.worker.retired and not s.kube.configmaps
        assert s.kube.configmap_writes == 0
    asyncio.run(scenario())


def test_a_worker_watched_again_does_not_read_its_ring():
    async def scenario():
        s = setup(spec())
        await published_with(s, 3)
        reads = []
        read_ring = s.kube.read_ring

        async def counted(*args):
            reads.append(1)
            return await read_ring(*args)
        s.kube.read_ring = counted  # type: ignore[method-assign]
        s.worker.unwatched()
        await s.step()  # still there: it goes on
        assert reads == [1] and not s.worker.retired
        s.worker.unwatched()
        s.observe()  # an event: watched again
        await s.step()
        assert reads == [1]
    asyncio.run(scenario())


def test_writes_refused_with_403_are_one_warning_then_quiet_and_one_line_when_they_pass(caplog):
    class Forbidden(Exception):  # as the client raises it: the Status in its body
        status = 403
        body = json.dumps({"kind": "Status", "message": 'shardrings.shardring.io "scrapers" is '
                           'forbidden: User "system:serviceaccount:x:y" cannot patch resource '
                           '"shardrings/status"'})

    async def scenario():
        s = setup(spec())
        await published_with(s, 3)
        patch_status = s.kube.patch_status

        async def refused(*_args):
            raise Forbidden("shardrings.shardring.io is forbidden")
        s.kube.patch_status = refused  # type: ignore[method-assign]
        for members in (4, 5, 4):
            s.sources.members(members)
            s.clock.advance(61)
            await s.step()
        s.kube.patch_status = patch_status  # type: ignore[method-assign]
        s.sources.members(5)
        s.clock.advance(61)
        await s.step()
        assert s.kube.ring["status"]["members"] == 5
    with caplog.at_level(logging.INFO, logger="shardring"):
        asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if "403" in r.getMessage() or
             "writes here again" in r.getMessage() or r.levelno >= logging.ERROR]
    assert len(lines) == 2 and "HTTP 403 Forbidden: shardrings.shardring.io" in lines[0], lines
    assert 'cannot patch resource "shardrings/status"' in lines[0]  # the admin's why
    assert "again" in lines[1] and not any(r.exc_info for r in caplog.records)


def test_a_ring_found_gone_retires_its_worker_quietly(caplog):
    """A deletion the watch never delivered (a re-list after an outage replays none): the
    status patch's 404 ends the worker, with one info line and no error."""
    from controller.core.views import RingGone

    async def scenario():
        s = setup(spec())
        await published_with(s, 3)

        async def gone(*_args):
            raise RingGone(NAME)
        s.kube.patch_status = gone
        s.sources.members(4)
        assert await s.step() is None
        assert s.worker.retired
        assert not [r for r in caplog.records if r.levelname == "ERROR"]
    asyncio.run(scenario())


def test_a_ring_created_again_under_its_name_gets_a_worker_of_its_own():
    from controller.operator.handlers import Operator
    from controller.operator.settings import OperatorConfig

    operator = Operator(OperatorConfig(), kube=FakeKube(spec()), sources=FakeSources(FakeClock()))
    old = operator.worker(NAMESPACE, NAME, "uid-old")
    new = operator.worker(NAMESPACE, NAME, "uid-new")  # its ADDED before the old one's DELETED
    assert new is not old and old.retired and not new.retired
    operator.forget(NAMESPACE, NAME, "uid-old")  # the late deletion of the old ring
    assert operator.workers[(NAMESPACE, NAME)] is new and not new.retired
    operator.forget(NAMESPACE, NAME, "uid-new")
    assert (NAMESPACE, NAME) not in operator.workers and new.retired


def test_the_spec_is_read_once_per_generation(monkeypatch):
    from controller.operator import worker as worker_module
    reads = []
    real = worker_module.read_spec
    monkeypatch.setattr(worker_module, "read_spec", lambda ring: reads.append(1) or real(ring))

    async def scenario():
        s = setup(spec(consul={"connection": "default",
                               "tokenSecretRef": {"name": "acl", "key": "token"}}))
        s.kube.secrets[("acl", "token")] = "s3cret"
        await published_with(s, 3)
        for _ in range(3):  # status echoes and membership changes: the same generation
            s.observe()
            s.sources.members(4)
            await s.step()
        assert len(reads) == 1
        assert s.worker.credentials_secret == "acl"  # which Secret's events concern this ring
        s.kube.edit_spec(shards=32, consul=None)
        s.observe()
        await s.step()
        assert len(reads) == 2 and s.worker.credentials_secret is None
        s.kube.edit_spec(shards=0)  # refused: the error is kept for the generation too
        s.observe()
        await s.step()
        s.observe()
        await s.step()
        assert len(reads) == 3 and s.kube.condition("Degraded") == ("True", "InvalidSpec")
    asyncio.run(scenario())


def test_a_configmap_the_listing_does_not_have_is_created_without_a_read():
    """At a first start every ring's ConfigMap is missing: the operator's listing says so, and
    no ring GETs it only to find a 404. A name the listing missed (a ConfigMap that is not ours,
    so not listed) is found by the create's 409, then read, and reported."""
    async def scenario():
        s = setup(spec(), listed=lambda namespace, name: False)
        await s.step()  # subscribed: waiting for the first reply
        s.sources.members(3)
        await s.step()
        assert (s.kube.configmap_reads, s.kube.configmap_writes) == (0, 1)
        assert s.kube.condition("Ready") == ("True", "Published")

        s = setup(spec(), listed=lambda namespace, name: False)
        s.kube.configmaps[f"{NAME}-ring"] = {"metadata": {"name": f"{NAME}-ring",
                                                          "resourceVersion": "1"},
                                             "data": {"someone": "else's"}}
        await s.step()
        s.sources.members(3)
        for _ in range(3):
            await s.step()
        assert s.kube.configmap_reads >= 1 and s.kube.configmap_writes == 0
        assert s.kube.condition("Ready") == ("False", "ConfigMapConflict")
        assert s.kube.configmaps[f"{NAME}-ring"]["data"] == {"someone": "else's"}
    asyncio.run(scenario())


def test_renamed_onto_a_configmap_not_its_own_the_status_names_where_the_ring_still_is():
    async def scenario():
        s = setup(spec())
        await published_with(s, 3)
        assert s.kube.ring["status"]["configMapName"] == f"{NAME}-ring"
        s.kube.configmaps["taken"] = {"metadata": {"name": "taken", "resourceVersion": "1"},
                                      "data": {"someone": "else's"}}
        s.kube.edit_spec(configMap={"name": "taken"})
        s.observe()
        await s.step()
        assert s.kube.condition("Ready") == ("False", "ConfigMapConflict")
        assert s.kube.ring["status"]["configMapName"] == f"{NAME}-ring"  # (kubectl: where)
        s.kube.edit_spec(configMap={"name": "free"})
        s.observe()
        await s.step()
        assert s.kube.ring["status"]["configMapName"] == "free"
        assert s.kube.condition("Ready") == ("True", "Published")
    asyncio.run(scenario())


def test_the_configmap_of_a_deleted_ring_of_its_name_is_taken_over_not_a_conflict():
    # Deleted and created again before the garbage collector took the old one's ConfigMap: it
    # said ConfigMapConflict, Stalled, "Delete or rename it", until the collector came.
    async def scenario():
        old = setup(spec())
        await published_with(old, 3)
        left = old.kube.configmaps[f"{NAME}-ring"]
        assert left["metadata"]["labels"]["shardring.io/ring"] == NAME
        left["metadata"]["ownerReferences"][0]["uid"] = "uid-of-the-deleted-one"
        s = setup(spec())
        s.kube.configmaps[f"{NAME}-ring"] = left
        await published_with(s, 3)
        assert s.kube.condition("Ready") == ("True", "Published")
        owners = s.kube.configmaps[f"{NAME}-ring"]["metadata"]["ownerReferences"]
        assert [o["uid"] for o in owners] == [s.kube.ring["metadata"]["uid"]]
        # Another ring's ConfigMap is still not taken.
        other = {**left, "metadata": {**left["metadata"], "labels": {
            **left["metadata"]["labels"], "shardring.io/ring": "another"}}}
        t = setup(spec())
        t.kube.configmaps[f"{NAME}-ring"] = other
        await t.step()
        t.sources.members(3)
        await t.step()
        assert t.kube.condition("Ready") == ("False", "ConfigMapConflict")
    asyncio.run(scenario())


async def stabilizing(window: str) -> tuple[Setup, int]:
    """A ring published with 3 members; 30 s later a fourth joins and Stable turns False, which
    is written at once. Returns the setup and its status writes so far."""
    s = setup(spec(window=window, max_delay="120s"))
    await published_with(s, 3)
    s.clock.now += 30
    s.sources.members(4)
    await s.step()
    return s, s.kube.status_writes


def test_under_churn_the_observed_count_is_written_at_most_every_few_seconds():
    """A change that only moves status.observedMembers (the ring already stabilizing) is held
    back OBSERVED_EVERY seconds after the last status write, then written by a pass that comes
    by itself; a condition that changes is written at once."""
    from controller.operator.publish import OBSERVED_EVERY

    async def scenario():
        s, writes = await stabilizing("60s")
        assert s.kube.condition("Stable") == ("False", "Stabilizing")
        assert s.kube.ring["status"]["observedMembers"] == 4
        s.clock.now += 1
        s.sources.members(5)  # only the count moves: held back
        timeout = await s.step()
        assert s.kube.status_writes == writes and s.kube.ring["status"]["observedMembers"] == 4
        assert timeout == pytest.approx(OBSERVED_EVERY - 1)
        s.clock.now += timeout
        await s.step()  # due: written, without another wake-up from the source
        assert s.kube.status_writes == writes + 1
        assert s.kube.ring["status"]["observedMembers"] == 5
        assert s.kube.published().version == 1
    asyncio.run(scenario())


def test_a_count_that_changes_as_a_window_begins_goes_with_the_pass_that_ends_it():
    """As churn stops, every ring's last change only moves its count (Stable is False already):
    written at once, then again by the publish a window later, it was two status writes a ring
    when the API server is busiest. Held for that pass instead: one."""
    async def scenario():
        s, writes = await stabilizing("5s")
        s.clock.now += 3
        s.sources.members(5)  # the window begins again; its end comes within OBSERVED_EVERY
        s.clock.now += 3  # (and the last status write is more than OBSERVED_EVERY ago)
        timeout = await s.step()
        assert s.kube.status_writes == writes and s.kube.ring["status"]["observedMembers"] == 4
        assert timeout == pytest.approx(2)  # the window's end: the count goes with the publish
        s.clock.now += 1
        s.sources.members(6)  # the source's next reply a second later moves the window again
        timeout = await s.step()
        assert s.kube.status_writes == writes and timeout == pytest.approx(5)
        s.clock.now += timeout
        await s.step()
        assert s.kube.published().version == 2
        assert s.kube.status_writes == writes + 1
        assert s.kube.ring["status"]["observedMembers"] == 6
        assert s.kube.condition("Stable")[0] == "True"
    asyncio.run(scenario())


def test_a_member_flapping_faster_than_the_window_flips_stable_at_most_every_few_seconds():
    """Each flip changed Stable and Reconciling (Settled <-> Stabilizing) with the count: a
    status write per flip, for every ring over the service. The first is said at once, the
    flips within OBSERVED_EVERY of it are held back, and the last goes out within twice that."""
    from controller.operator.publish import OBSERVED_EVERY

    async def scenario():
        s, writes = await stabilizing("2s")  # Stable False, written at once
        start = s.clock.now
        for flip in range(20):  # every half second: back to the published 3, then 4 again
            s.clock.now += 0.5
            s.sources.members(3 if flip % 2 == 0 else 4)
            await s.step()
        assert s.kube.published().version == 1  # (never held for a window)
        assert s.kube.status_writes - writes <= (s.clock.now - start) / OBSERVED_EVERY + 1
        s.sources.members(3)  # it stops, as published
        for _ in range(25):
            s.clock.now += 0.5
            await s.step()
        assert s.kube.condition("Stable") == ("True", "Settled")
        assert s.kube.ring["status"]["observedMembers"] == 3
    asyncio.run(scenario())


def test_under_steady_churn_a_held_count_still_goes_out_within_twice_observed_every():
    from controller.operator.publish import OBSERVED_EVERY

    async def scenario():
        s, writes = await stabilizing("5s")
        first = None
        for count in range(5, 20):  # a reply every 2 s: the window never ends
            s.clock.now += 2
            s.sources.members(count)
            await s.step()
            first = first if first is not None else s.clock.now
            if s.kube.status_writes > writes:
                break
        assert s.kube.status_writes == writes + 1
        assert s.clock.now - first <= 2 * OBSERVED_EVERY
        assert s.kube.published().version == 1
    asyncio.run(scenario())


def test_the_worker_keeps_its_own_ring_parsed_not_its_text_and_reads_anyone_elses():
    async def scenario():
        s = setup(spec())
        await published_with(s, 3)
        name = next(iter(s.kube.configmaps))
        mine = view_from_dict(s.kube.configmaps[name])
        # Written, and coming back as an event: known by its digest, its text let go.
        assert s.worker.seen.view.ring_json is None
        s.worker.configmap_seen(name, mine)
        assert s.worker.seen.view.ring_json is None
        assert s.worker.seen.view.ring_digest == mine.ring_digest
        await s.step()
        assert s.kube.configmap_writes == 1  # and nothing to write: it is the published ring
        # Someone else's ring.json is kept, read, and replaced by the ring as it should be.
        body = s.kube.configmaps[name]
        document = json.loads(body["data"]["ring.json"])
        document["assignment"] = [[0] for _ in document["assignment"]]  # all to one member
        body["data"]["ring.json"] = ringfile.canonical_json(document)
        body["metadata"]["resourceVersion"] = "edited"
        s.worker.configmap_seen(name, view_from_dict(body))
        assert s.worker.seen.view.ring_json == body["data"]["ring.json"]
        await s.step()
        assert s.kube.configmap_writes == 2
        assert len(set(s.kube.published().assignment.table.ravel().tolist())) == 3
        assert s.worker.seen.view.ring_json is None
    asyncio.run(scenario())


def test_the_worker_keeps_one_status_the_one_it_wrote_not_a_copy_per_echo():
    async def scenario():
        s = setup(spec())
        await published_with(s, 3)
        written = s.worker.publisher.written_status
        assert written is not None and s.worker.body["status"] is written
        s.observe()  # our own patch coming back: the same status, so the same dict
        assert s.worker.body["status"] is written
        s.kube.ring["status"] = {**s.kube.ring["status"], "ringVersion": 99}  # someone else's
        s.observe()
        assert s.worker.body["status"] is not written
        assert s.worker.body["status"]["ringVersion"] == 99 and written["ringVersion"] == 1
        s.kube.ring["status"]["ringVersion"] = 98  # and the copy is the worker's own
        assert s.worker.body["status"]["ringVersion"] == 99
    asyncio.run(scenario())


def test_the_memory_trimmer_hears_of_each_event_posted():
    """Events wait for the rings' writes, so a burst's last ones are posted after its last pass:
    what they freed is given back too."""
    import logging

    from controller.core.events import Event
    from controller.core.planner import PassPlan
    from controller.operator.publish import Publisher

    async def scenario() -> list[str]:
        heard: list[str] = []
        kube = FakeKube(spec())
        publisher = Publisher(kube, NAMESPACE, NAME, logging.LoggerAdapter(
            logging.getLogger("test"), {}), set(), after_post=lambda: heard.append("posted"))
        publisher.events(PassPlan(status={}, events=(Event("Normal", "Resharded", "v1"),)),
                         kube.ring, warnings=False)
        assert heard == []
        await asyncio.sleep(0.01)
        assert ("Normal", "Resharded") in kube.events
        return heard
    assert asyncio.run(scenario()) == ["posted"]


def test_a_deleted_ring_is_one_info_line(caplog):
    from controller.operator.handlers import Operator
    from controller.operator.settings import OperatorConfig

    operator = Operator(OperatorConfig(), kube=FakeKube(spec()), sources=FakeSources(FakeClock()))
    operator.worker(NAMESPACE, NAME, "uid-1")
    with caplog.at_level(logging.INFO, logger="shardring"):
        operator.forget(NAMESPACE, NAME, "uid-1")  # its deletionTimestamp
        operator.forget(NAMESPACE, NAME, "uid-1")  # then its DELETED event
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    # (This worker never published: nothing of it goes with it.)
    assert said == [("INFO", f"[{NAMESPACE}/{NAME}] the ShardRing was deleted; it had published "
                             "nothing")]
    from controller.operator.inputs import SeenConfigMap
    worker = operator.worker(NAMESPACE, NAME, "uid-2")
    worker.seen = SeenConfigMap("r-ring", view_from_dict({"metadata": {
        "name": "r-ring", "resourceVersion": "1",
        "ownerReferences": [{"controller": True, "uid": "uid-2"}]}, "data": {}}))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="shardring"):
        operator.forget(NAMESPACE, NAME, "uid-2")
    assert [r.getMessage() for r in caplog.records] == [
        f"[{NAMESPACE}/{NAME}] the ShardRing was deleted; it is no longer published (its "
        "ConfigMap goes with it)"]


def test_a_configmap_gone_is_put_back_unless_its_ring_is_gone_too():
    """Deleted by hand: put back. Collected with its ring, whose deletion event never came (its
    CRD deleted under the operator): the worker stops, rather than recreate it for ever."""
    async def scenario():
        s = setup(spec())
        await published_with(s, 3)
        reads = s.kube.configmap_writes
        del s.kube.configmaps[f"{NAME}-ring"]
        s.worker.configmap_seen(f"{NAME}-ring", None)  # its DELETED event
        await s.step()
        assert s.kube.configmap_writes == reads + 1 and not s.worker.retired
        await s.step()  # (the write's echo: the confirming pass)

        async def gone(namespace: str, name: str) -> None:
            return None
        s.kube.read_ring = gone  # type: ignore[method-assign]
        del s.kube.configmaps[f"{NAME}-ring"]
        s.worker.configmap_seen(f"{NAME}-ring", None)
        await s.step()
        assert s.kube.configmap_writes == reads + 1 and s.worker.retired
    asyncio.run(scenario())
