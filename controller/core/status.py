"""A ring's status document and its conditions, from what a pass found. Pure.

The condition vocabulary: ``Ready`` (the ConfigMap holds the current ring), ``SourceReachable``
(also under a source's ``legacy_condition``, its first name: deprecated), ``Stable`` (no change
waiting out its window), ``Degraded`` (a Problem, with its Reason), ``Converged`` (the members'
ring agents applied the published version)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from controller.core import handover, ringfile
from controller.core.acks import SHOWN_LAGGING, Ack, convergence
from controller.core.conditions import Condition, merge
from controller.core.decision import SHOWN_MEMBERS, Decision, Problem, kept
from controller.core.source_state import SourceState
from controller.core.spec import RingConfig, Vocabulary
from controller.core.views import RingObject


def build_status(ring: RingObject, config: RingConfig | None, problem: Problem | None,
                 source: SourceState | None, decision: Decision | None, now_text: str,
                 suspended: bool = False, acks: tuple[Ack, ...] = (),
                 ending: handover.Progress | None = None) -> dict[str, Any]:
    current = dict(ring.status)
    status: dict[str, Any] = {k: v for k, v in current.items() if k != "conditions"}
    status["observedGeneration"] = ring.generation
    if config is not None:
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
    wanted.append(_converged(status, published, acks, decision, now_text, current))
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
