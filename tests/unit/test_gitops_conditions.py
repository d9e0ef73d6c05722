"""kstatus' conditions beside Ready (issue #24): ``Reconciling`` while a change is on its way,
``Stalled`` for what only a person's change can fix, so a GitOps health check fails at once with
the message instead of waiting for its timeout. What kstatus and Argo CD make of them is checked
with the real libraries in tests/integration/test_gitops_health.py."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controller.core.acks import Ack
from controller.core.conditions import Condition
from controller.core.decision import Problem, Reason
from controller.core.limits import Access, Limits
from controller.core.planner import Gathered, plan_pass, prepare
from controller.core.source_state import SourceState
from controller.core.status import CONVERGENCE_PATIENCE, NEEDS_A_PERSON, progress_conditions
from controller.core.views import ConfigMapView, RingObject
from controller.sources.specs import read_spec
from tests.unit.test_status_messages import (
    CONFIG,
    SPEC,
    condition,
    remembered,
    ring_object,
    source_with,
)

# Problems the world can clear without anybody touching the ShardRing: members come back.
WAITS_FOR_THE_WORLD = {Reason.NOT_ENOUGH_MEMBERS, Reason.MEMBER_LOSS}
SETTLED = Condition("Converged", True, "Applied", "")


def pair(status: dict) -> tuple[tuple[str, str], tuple[str, str]]:
    return tuple((condition(status, kind)["status"], condition(status, kind)["reason"])
                 for kind in ("Reconciling", "Stalled"))  # type: ignore[return-value]


def test_every_reason_is_either_for_a_person_or_for_the_world():
    # A new Reason must be placed on purpose: a GitOps pipeline either fails on it or waits.
    assert set(Reason) == NEEDS_A_PERSON | WAITS_FOR_THE_WORLD
    assert not NEEDS_A_PERSON & WAITS_FOR_THE_WORLD


@pytest.mark.parametrize("reason", sorted(NEEDS_A_PERSON))
def test_a_problem_only_a_person_can_fix_stalls_with_its_message(reason):
    reconciling, stalled = progress_conditions(Problem(reason, "fix it"), None, None, None,
                                               SETTLED, False)
    assert (stalled.status, stalled.reason, stalled.message) == (True, str(reason), "fix it")
    assert reconciling.status is False  # kstatus would read a true Reconciling first


@pytest.mark.parametrize("reason", sorted(WAITS_FOR_THE_WORLD))
def test_a_problem_the_world_can_clear_does_not_stall(reason):
    reconciling, stalled = progress_conditions(Problem(reason, "wait"), None, None, None,
                                               SETTLED, False)
    assert stalled.status is False and reconciling.status is False


def test_a_published_ring_is_neither_reconciling_nor_stalled():
    plan_ = plan_pass(ring_object(), CONFIG, Gathered(None, source_with("a", "b")), 0.0, "t")
    assert condition(plan_.status, "Ready")["status"] == "True"
    assert pair(plan_.status) == (("False", "Settled"), ("False", "AsExpected"))


def test_before_the_first_reply_a_ring_is_reconciling():
    plan_ = plan_pass(ring_object(), CONFIG, Gathered(None, SourceState()), 0.0, "t")
    assert pair(plan_.status)[0] == ("True", "Pending")


def test_a_change_waiting_out_its_window_is_reconciling_until_published():
    config = replace(CONFIG, stabilization=replace(CONFIG.stabilization, window=10.0))
    first = plan_pass(ring_object(), config, Gathered(None, source_with("a", "b")), 0.0, "t")
    memory = remembered(first.published)
    waiting = plan_pass(ring_object(first.status), config,
                        Gathered(None, source_with("a", "b", "c"), memory=memory), 1.0, "t")
    assert pair(waiting.status)[0] == ("True", "Stabilizing")
    done = plan_pass(ring_object(waiting.status), config,
                     Gathered(None, source_with("a", "b", "c"), memory=memory), 12.0, "t")
    assert done.change is not None and pair(done.status)[0] == ("False", "Settled")


def test_a_ring_its_agents_have_not_applied_yet_is_reconciling():
    first = plan_pass(ring_object(), CONFIG, Gathered(None, source_with("a", "b")), 0.0, "t")
    ring = first.published
    old = Ack("lease-b", "r", "b", ring.version - 1, "sha256:old", "ok", "t")
    new = Ack("lease-a", "r", "a", ring.version, ring.hash, "ok", "t")
    lagging = plan_pass(ring_object(first.status), CONFIG,
                        Gathered(None, source_with("a", "b"), memory=remembered(ring),
                                 acks=(new, old)), 1.0, "t")
    assert pair(lagging.status)[0] == ("True", "Converging")
    assert "not yet: b" in condition(lagging.status, "Reconciling")["message"]


def test_a_configmap_in_the_way_and_a_limit_stall_the_ring():
    foreign = ConfigMapView("r-ring", None, "", {}, "someone-else", "1")
    conflict = plan_pass(ring_object(), CONFIG, Gathered(foreign, source_with("a")), 0.0, "t")
    assert pair(conflict.status) == (("False", "Stalled"), ("True", "ConfigMapConflict"))
    over = plan_pass(ring_object(), CONFIG, Gathered(None, source_with("a", "b")), 0.0, "t",
                     Limits(max_members=1))
    assert pair(over.status)[1] == ("True", "LimitExceeded")
    assert condition(over.status, "Stalled")["message"] == condition(over.status,
                                                                     "Ready")["message"]


def test_a_source_that_refuses_the_token_stalls_the_ring():
    refused = SourceState(error="Consul refused the token (403)", permission_denied=True)
    plan_ = plan_pass(ring_object(), CONFIG, Gathered(None, refused), 0.0, "t")
    assert pair(plan_.status)[1] == ("True", "PermissionDenied")


def test_a_suspended_ring_is_neither():
    ring = RingObject("team", "r", "uid-1", 1, dict(SPEC, suspend=True), {})
    intent = prepare(ring, {("consul", "default"): Access()}, "t", read_spec)
    assert intent.plan is not None
    assert pair(intent.plan.status) == (("False", "Suspended"), ("False", "AsExpected"))


def test_agents_that_never_apply_the_ring_stall_it_after_the_patience_with_their_names():
    t0, t1, late = "2026-12-02T10:00:00Z", "2026-12-02T10:00:01Z", "2026-12-02T10:05:02Z"
    first = plan_pass(ring_object(), CONFIG, Gathered(None, source_with("a", "b")), 0.0, t0)
    ring = first.published
    acks = (Ack("lease-a", "r", "a", ring.version, ring.hash, "ok", t0),
            Ack("lease-b", "r", "b", ring.version - 1, "sha256:old", "failed", t0))
    gathered = Gathered(None, source_with("a", "b"),
                        memory=replace(remembered(ring), watching_since=t0), acks=acks)
    lagging = plan_pass(ring_object(first.status), CONFIG, gathered, 1.0, t1)
    assert pair(lagging.status)[0] == ("True", "Converging")
    # Woken when the patience ends, even if no agent or member ever writes again.
    assert lagging.requeue_after == pytest.approx(CONVERGENCE_PATIENCE - 1.0)
    gathered = replace(gathered, memory=lagging.memory)  # as the worker carries it
    stalled = plan_pass(ring_object(lagging.status), CONFIG, gathered, 302.0, late)
    assert pair(stalled.status) == (("False", "Stalled"), ("True", "NotConverged"))
    message = condition(stalled.status, "Stalled")["message"]
    assert "not yet: b" in message and "5 minutes after it was published" in message
    assert condition(stalled.status, "Ready")["status"] == "True"  # the ring itself is served
    assert stalled.requeue_after is None  # no busy loop while it stays stalled
    still = plan_pass(ring_object(stalled.status), CONFIG, gathered, 420.0,
                      "2026-12-02T10:07:00Z")
    assert still.status == stalled.status | {"conditions": still.status["conditions"]} and \
        condition(still.status, "Stalled") == condition(stalled.status, "Stalled")  # no rewrite
    caught_up = replace(gathered, acks=(acks[0], replace(acks[1], version=ring.version,
                                                            ring_hash=ring.hash, reload="ok")))
    # An operator restarted after the publication (its memory fresh, the acknowledgements maybe
    # not all listed yet) gives the members the whole patience again before it says Stalled.
    restarted = plan_pass(ring_object(lagging.status), CONFIG,
                          replace(gathered, memory=remembered(ring)), 302.0, late)
    assert pair(restarted.status)[0] == ("True", "Converging")
    assert restarted.requeue_after == pytest.approx(CONVERGENCE_PATIENCE)
    done = plan_pass(ring_object(stalled.status), CONFIG, caught_up, 400.0,
                     "2026-12-02T10:06:40Z")
    assert pair(done.status) == (("False", "Settled"), ("False", "AsExpected"))


def test_a_handover_is_bounded_by_its_own_timeout_not_by_the_convergence_patience():
    first = plan_pass(ring_object(), CONFIG, Gathered(None, source_with("a", "b")), 0.0, "t")
    handing_over = replace(first.published, handover={"a": (0,)})
    lagging = Condition("Converged", False, "Lagging", "1 of 2 members applied")
    reconciling, stalled = progress_conditions(None, None, None, handing_over, lagging, False,
                                               CONVERGENCE_PATIENCE * 2)
    assert (reconciling.reason, stalled.status) == ("HandingOver", False)
    _, stalled = progress_conditions(None, None, None, first.published, lagging, False,
                                     CONVERGENCE_PATIENCE * 2)
    assert (stalled.status, stalled.reason) == (True, "NotConverged")



def test_a_time_without_a_zone_is_unreadable_not_an_error():
    from controller.core.rfc3339 import seconds_between
    assert seconds_between("2026-12-02T10:00:00", "2026-12-02T10:05:00Z") is None
