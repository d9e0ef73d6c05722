"""A ring's status document and its conditions, from what a pass found. Pure.

The condition vocabulary: ``Ready`` (the ConfigMap holds the current ring), ``SourceReachable``
(also under a source's ``legacy_condition``, its first name: deprecated), ``Stable`` (no change
waiting out its window), ``Degraded`` (a Problem, with its Reason), ``Converged`` (the members'
ring agents applied the published version), and kstatus' pair for GitOps tools: ``Reconciling``
(a change is on its way) and ``Stalled`` (only a person's change can help)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from controller.core import handover, ringfile
from controller.core.acks import SHOWN_LAGGING, Ack, convergence
from controller.core.conditions import Condition, merge
from controller.core.decision import SHOWN_MEMBERS, Decision, Problem, Reason, kept
from controller.core.rfc3339 import seconds_between
from controller.core.source_state import SourceState
from controller.core.spec import RingConfig, Vocabulary
from controller.core.views import RingObject


def build_status(ring: RingObject, config: RingConfig | None, problem: Problem | None,
                 source: SourceState | None, decision: Decision | None, now_text: str,
                 suspended: bool = False, acks: tuple[Ack, ...] = (),
                 ending: handover.Progress | None = None,
                 watching_since: str | None = None,
                 also: tuple[Condition, ...] = ()) -> dict[str, Any]:
    """``watching_since``: when this operator began following the ring (its acknowledgements
    may not all be listed before that: members are not counted as lagging for longer);
    ``also``: conditions of a feature the ring uses (Balanced, when it balances by load)."""
    current = dict(ring.status)
    # (measuredLoad: the planner adds it, from this pass's load reports, or not at all.)
    status: dict[str, Any] = {k: v for k, v in current.items()
                              if k not in ("conditions", "measuredLoad")}
    status["observedGeneration"] = ring.generation
    if config is not None:
        # Where the ring is published: while the spec's name is taken by a ConfigMap not its
        # own, that is still where it was (if anywhere).
        if problem is None or problem.reason != Reason.CONFIGMAP_CONFLICT:
            status["configMapName"] = config.configmap
        status["source"] = config.query.describe()
    published = decision.ring if decision else None
    if published is not None:
        loads = published.assignment.loads.values()
        status.update(members=len(published.assignment.members),
                      shards=published.assignment.shards, ringVersion=published.version,
                      ringHash=published.hash, consulIndex=published.source_index,
                      load={"min": min(loads, default=0), "max": max(loads, default=0)})
        status.pop("draining", None)
        if published.draining:
            status["draining"] = list(published.draining)
    released = ending is not None and ending.done is not None
    if decision is not None and decision.changed and not released:
        status["lastChange"] = {"time": now_text, "added": decision.added,
                                "removed": decision.removed, "movedShards": decision.moved}
        if decision.afresh:  # (not known: not 0)
            del status["lastChange"]["movedShards"]
        if decision.joined:
            status["lastChange"]["joined"] = list(decision.joined[:SHOWN_MEMBERS])
        if decision.left:
            status["lastChange"]["left"] = list(decision.left[:SHOWN_MEMBERS])
    # What the source reports now, beside what is published (status.members): they differ
    # while a change stabilizes or a guard holds the last ring.
    status.pop("observedMembers", None)
    if decision is not None and decision.observed is not None and \
            source is not None and not source.error:
        status["observedMembers"] = decision.observed
    wanted = conditions_for(problem, source, decision, suspended,
                            config.query.words if config is not None else None)
    converged = _converged(status, published, acks, decision, now_text, current)
    wanted += [converged, *progress_conditions(
        problem, source, decision, published, converged, suspended,
        _converging_for(status, now_text, watching_since)), *also]
    _handover_status(status, published, ending, decision, now_text, current)
    status["conditions"] = merge(current.get("conditions"), wanted, ring.generation, now_text)
    return status


def _handover_status(status: dict[str, Any], published: ringfile.RingFile | None,
                     state: handover.Progress | None, decision: Decision | None, now_text: str,
                     current: Mapping[str, Any]) -> None:
    if published is None:
        return
    status.pop("handover", None)
    if published.handover:
        before = current.get("handover") or {}
        waiting = state.waiting_for if state is not None else handover.receivers(published)
        status["handover"] = {
            "ringVersion": published.version,
            "shards": handover.shards_in(published.handover),
            "from": sorted(published.handover), "waitingFor": list(waiting[:SHOWN_LAGGING]),
            "since": before.get("since", now_text)
            if before.get("ringVersion") == published.version else now_text}
    elif state is not None and state.done and decision is not None and decision.changed:
        status["lastHandover"] = {"ringVersion": published.version, "completedBy": state.done,
                                  "time": now_text}
        if state.waiting_for:
            status["lastHandover"]["waitedFor"] = list(state.waiting_for[:SHOWN_LAGGING])


def _converged(status: dict[str, Any], published: ringfile.RingFile | None,
               acks: tuple[Ack, ...], decision: Decision | None, now_text: str,
               current: Mapping[str, Any]) -> Condition:
    """status.convergence and .drained for the published ring, and the Converged condition; a
    pass that does not know the published ring keeps what the last one found."""
    if published is None:
        before = next((c for c in current.get("conditions") or []
                       if c.get("type") == "Converged"), None)
        if before is None:
            return Condition("Converged", None, "NotPublished", "no ring is published yet")
        status_value = {"True": True, "False": False}.get(before.get("status", ""))
        return Condition("Converged", status_value, before.get("reason", ""),
                         before.get("message", ""))
    previous = current.get("convergence") or {}
    fresh = decision is not None and decision.changed
    since = str(previous["since"]) if not fresh and previous.get("ringVersion") == \
        published.version and previous.get("since") else now_text
    found = convergence(published, acks, since)
    status["convergence"] = found.status
    status.pop("drained", None)
    if found.drained:
        status["drained"] = list(found.drained)
    return found.condition


def conditions_for(problem: Problem | None, source: SourceState | None,
                   decision: Decision | None, suspended: bool,
                   words: Vocabulary | None = None) -> list[Condition]:
    """Every ring reports its source as ``SourceReachable``; a kind whose condition had another
    name first (``words.legacy_condition``) reports it under that name too (deprecated: kept for
    existing readers). ``words``: None while the spec names no source that can be read."""
    name = words.name if words is not None else "membership"
    reachable_type = "SourceReachable"
    if source is None:
        reachable = Condition(reachable_type, None, "NotQueried",
                              f"no {name} query is running for this ring")
    elif source.refused:
        reachable = Condition(reachable_type, True, "QueryRefused", source.error or "")
    elif source.over_limit:
        reachable = Condition(reachable_type, True, "LimitExceeded", source.error or "")
    elif source.error:
        reachable = Condition(reachable_type, False,
                              "PermissionDenied" if source.permission_denied else "QueryFailed",
                              f"{source.error}. {kept(decision.ring if decision else None)}")
    else:
        reachable = Condition(reachable_type, True, "QuerySucceeded", "")
    waiting = decision is not None and decision.wait_until is not None
    stable = Condition("Stable", not waiting, "Stabilizing" if waiting else "Settled",
                       "a membership change is waiting out spec.stabilization.window (or the "
                       "operator's minimum interval between ring versions)"
                       if waiting else "")
    degraded = Condition("Degraded", problem is not None,
                         str(problem.reason) if problem else "AsExpected",
                         problem.message if problem else "")
    if suspended:
        ready = Condition("Ready", False, "Suspended",
                          "spec.suspend is true; the last ConfigMap is kept as it is")
    elif problem is not None:
        ready = Condition("Ready", False, str(problem.reason), problem.message)
    elif source is not None and source.error:
        ready = Condition("Ready", False,
                          words.unreachable_reason if words else "SourceUnreachable",
                          reachable.message)
    elif decision is None or decision.ring is None:
        ready = Condition("Ready", False, "Pending", f"waiting for the first {name} reply")
    else:
        ready = Condition("Ready", True, "Published", "the ConfigMap holds the current ring")
    also = [replace(reachable, type=words.legacy_condition)] \
        if words is not None and words.legacy_condition else []
    return [ready, reachable, *also, stable, degraded]


# Problems that no retry, source event or agent can clear: only a change to the ShardRing, its
# Secret, the operator's settings or the ConfigMap in the way. kstatus reads Stalled as Failed,
# so a GitOps health check fails at once with the message instead of waiting for its timeout.
NEEDS_A_PERSON = frozenset({
    Reason.INVALID_SPEC, Reason.UNKNOWN_CONNECTION, Reason.SECRET_MISSING,
    Reason.CONFIGMAP_CONFLICT, Reason.RING_TOO_LARGE, Reason.INVALID_FILTER,
    Reason.INVALID_QUERY, Reason.INVALID_MEMBERSHIP, Reason.DATACENTER_NOT_ALLOWED,
    Reason.TOKEN_REQUIRED, Reason.LIMIT_EXCEEDED})
# Converged reasons that mean the published ring is still on its way to the workloads.
_CONVERGING = frozenset({"NotAcknowledged", "Lagging"})
# How long members may take to apply a published ring before the ring reports Stalled
# (NotConverged): a health check then fails with the lagging members' names instead of waiting
# for its own timeout. A healthy agent applies a ring in seconds; a Prometheus reload, a few more.
CONVERGENCE_PATIENCE = 300.0


def progress_conditions(problem: Problem | None, source: SourceState | None,
                        decision: Decision | None, published: ringfile.RingFile | None,
                        converged: Condition, suspended: bool,
                        converging_for: float | None = None) -> list[Condition]:
    """``Reconciling`` and ``Stalled`` (kstatus' abnormal-true pair; both always present, so
    ``kubectl wait --for=condition=Stalled=false`` works too). A ring neither reconciling nor
    stalled and not Ready (an unreachable source, a guard holding the last ring) is waiting for
    the world, not for a person: kstatus reads its Ready=False as InProgress.
    ``converging_for``: seconds since the published ring was published."""
    stalled = None
    if problem is not None and problem.reason in NEEDS_A_PERSON:
        stalled = Condition("Stalled", True, str(problem.reason), problem.message)
    elif source is not None and source.permission_denied:  # a token's rights or a new token
        stalled = Condition("Stalled", True, "PermissionDenied", source.error or "")
    elif not suspended and converged.status is False and converged.reason in _CONVERGING and \
            not (published is not None and published.handover) and \
            converging_for is not None and converging_for >= CONVERGENCE_PATIENCE:
        # (A handover has its own timeout, after which the next version is published.)
        stalled = Condition("Stalled", True, "NotConverged",
                            f"{converged.message}; still not applied "
                            f"{CONVERGENCE_PATIENCE / 60:.0f} minutes after it was published: "
                            f"their ring agents (or the workloads' reloads) need a look")
    if stalled is not None:
        return [Condition("Reconciling", False, "Stalled", stalled.message), stalled]
    reconciling = Condition("Reconciling", False, "Settled", "")
    if suspended:
        reconciling = Condition("Reconciling", False, "Suspended",
                                "spec.suspend is true: nothing is published until it is false")
    elif decision is not None and decision.wait_until is not None:
        reconciling = Condition("Reconciling", True, "Stabilizing",
                                "a membership change is waiting out spec.stabilization.window "
                                "(or the minimum interval between ring versions)")
    elif published is not None and published.handover:
        reconciling = Condition("Reconciling", True, "HandingOver",
                                f"shards move to new owners; their previous owners keep them "
                                f"until the new owners acknowledge ring version "
                                f"{published.version}")
    elif converged.status is False and converged.reason in _CONVERGING:
        reconciling = Condition("Reconciling", True, "Converging", converged.message)
    elif problem is None and not (source is not None and source.error) and \
            (decision is None or decision.ring is None):
        reconciling = Condition("Reconciling", True, "Pending", "waiting for the first reply "
                                "from the membership source")
    return [reconciling, Condition("Stalled", False, "AsExpected", "")]


def _converging_for(status: Mapping[str, Any], now_text: str,
                    watching_since: str | None) -> float | None:
    """Seconds the published ring has been on its way to the members, as far as this operator
    knows: since it was published, or since the operator began following the ring (right after
    a restart the agents' acknowledgements are still being listed)."""
    since = (status.get("convergence") or {}).get("since")
    waited = seconds_between(since, now_text) if since else None
    watched = seconds_between(watching_since, now_text) if watching_since else None
    if waited is None or watched is None:
        return waited
    return min(waited, watched)


def converging_due(status: Mapping[str, Any], now_text: str,
                   watching_since: str | None = None) -> float | None:
    """Seconds until a ring still converging has waited CONVERGENCE_PATIENCE (its next pass then
    reports Stalled even if nothing else happens); None when it is not converging."""
    reconciling = next((c for c in status.get("conditions") or []
                        if c.get("type") == "Reconciling"), None)
    if reconciling is None or reconciling.get("reason") != "Converging":
        return None
    waited = _converging_for(status, now_text, watching_since)
    return None if waited is None else max(0.0, CONVERGENCE_PATIENCE - waited)
