"""The pass planner: everything one reconcile pass of a ring must do, from what the pass knows.

Pure: no I/O and no clock (times are inputs). A pass runs in two steps because what the shell
must gather depends on the spec: ``prepare`` reads the spec (and may end the pass there: a bad
spec, an unknown connection, a suspended ring); the shell then reads the token, subscribes to the
membership source and looks at the owned ConfigMap; ``plan_pass`` decides the rest. The shell
carries the plan out: write the ConfigMap if given, patch the status if it differs, post the
events, run again after ``requeue_after``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np

from controller.core import handover, loads, ringfile
from controller.core.access import access_problem
from controller.core.acks import Ack, load_reports
from controller.core.balance import (
    balance_condition,
    balance_warning,
    last_rebalance,
    showing_load,
)
from controller.core.decision import Decision, Problem, Reason, decide, kept, rebalance
from controller.core.events import Event, handover_ended, rebalanced, resharded, warnings
from controller.core.limits import Access, Limits
from controller.core.membership import Membership, MembershipError, members_from
from controller.core.memory import RingMemory, Verified
from controller.core.render import RingTooLarge, configmap_data
from controller.core.rfc3339 import epoch, seconds_between
from controller.core.ring import work
from controller.core.source_state import Snapshot, SourceState
from controller.core.spec import RingConfig, SpecError
from controller.core.status import build_status, converging_due
from controller.core.views import (
    MANAGED_BY,
    RING_LABEL,
    ConfigMapView,
    RingObject,
    data_digest,
    owner_reference,
    text_digest,
)

# For what no event announces: a token Secret appearing, a conflicting ConfigMap going away.
RECHECK = 30.0
# A ring bigger than this waits proportionally more than limits.min_publish_interval between
# versions: with the default 0.1 s, no ring writes more than about 1 MiB a second.
BYTES_PER_PUBLISH_INTERVAL = 100 << 10


@dataclass(frozen=True)
class Gathered:
    """What the shell found out for the pass, after ``prepare``."""

    configmap: ConfigMapView | None  # the owned ConfigMap as last seen (None: it does not exist)
    source: SourceState | None = None  # None: not subscribed (the token is missing)
    token_problem: str | None = None  # why the token Secret cannot be used
    memory: RingMemory = RingMemory()  # what the worker remembers from its earlier passes
    acks: tuple[Ack, ...] = ()  # the ring agents' acknowledgements (Leases) for this ring


@dataclass(frozen=True)
class DesiredConfigMap:
    name: str
    data: Mapping[str, str]
    labels: Mapping[str, str]
    owner: Mapping[str, Any]
    prometheus_relabel: bool  # part of what the data renders: a Verified version records it
    # Hashed with the plan (in the planning thread for a big ring), not on the event loop.
    digest: str

    def matches(self, current: ConfigMapView) -> bool:
        return current.data_digest == self.digest and \
            all(current.labels.get(k) == v for k, v in self.labels.items()) and \
            current.controller_uid == self.owner.get("uid")


@dataclass(frozen=True)
class PassPlan:
    status: dict[str, Any]  # the whole status; written only if it differs from the current one
    subscribe: bool = False  # keep a membership subscription (False: drop it)
    configmap: DesiredConfigMap | None = None  # to write (unless it already matches)
    published: ringfile.RingFile | None = None  # the ring the ConfigMap holds after the write
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None  # None: run again when something changes
    # What the worker remembers after this pass, once the ConfigMap (if any) is written; None:
    # as it was (a pass that ended early decides nothing).
    memory: RingMemory | None = None
    change: Decision | None = None  # a new ring version, for metrics
    configmap_unowned: bool = False  # the ConfigMap is not ours: do not trust the cached view


@dataclass(frozen=True)
class Intent:
    """``prepare``'s answer: a config to gather inputs for, or the whole plan already."""

    config: RingConfig | None = None
    plan: PassPlan | None = None


def prepare(ring: RingObject, connections: Mapping[tuple[str, str], Access],
            now_text: str, read: Callable[[RingObject], RingConfig]) -> Intent:
    """``connections``: who may use each connection, by (source kind, name); ``read``: the
    ring's spec as a config (every source kind's reader; the worker's keeps what it read), or a
    SpecError."""
    try:
        config = read(ring)
    except SpecError as error:
        return Intent(plan=_ended(ring, None, Problem(Reason.INVALID_SPEC, str(error)), now_text))
    problem = access_problem(ring.namespace, config, connections)
    if problem is not None:
        return Intent(plan=_ended(ring, config, problem, now_text))
    if config.suspend:
        return Intent(plan=_ended(ring, config, None, now_text, suspended=True))
    return Intent(config=config)


def _ended(ring: RingObject, config: RingConfig | None, problem: Problem | None, now_text: str,
           suspended: bool = False, requeue_after: float | None = None) -> PassPlan:
    """A pass that publishes nothing and queries nothing."""
    status = build_status(ring, config, problem, None, None, now_text, suspended=suspended)
    return PassPlan(status=status, events=warnings(ring, problem), requeue_after=requeue_after)


def plan_pass(ring: RingObject, config: RingConfig, gathered: Gathered, now: float,
              now_text: str, limits: Limits = Limits()) -> PassPlan:
    """``now`` is monotonic (stabilization deadlines); ``now_text`` the wall clock for status."""
    if gathered.token_problem is not None:
        return _ended(ring, config, Problem(Reason.SECRET_MISSING, gathered.token_problem),
                      now_text, requeue_after=RECHECK)
    source = gathered.source
    configmap = gathered.configmap
    if configmap is not None and configmap.controller_uid != ring.uid and \
            not _predecessors(configmap, ring):
        problem = Problem(Reason.CONFIGMAP_CONFLICT,
                          f"ConfigMap {config.configmap!r} already exists and is not owned by this "
                          f"ShardRing; it is left untouched. Delete or rename it, or set "
                          f"spec.configMap.name")
        status = build_status(ring, config, problem, source, None, now_text)
        return PassPlan(status=status, subscribe=True, events=warnings(ring, problem),
                        requeue_after=RECHECK, configmap_unowned=True,
                        memory=replace(gathered.memory, handover_since=None))
    previous, from_configmap = _previous(ring, configmap, gathered)
    measured = _shard_loads(previous, gathered, now_text, config.balance.half_life)
    by_load = measured.per_shard if config.balance.by_load else None
    decision = _decide(ring, config, source, previous, gathered, now, limits, by_load)
    last_version = int(ring.status.get("ringVersion") or 0)
    decision, balance_checked = _rebalance(decision, previous, config, by_load,
                                           gathered.memory.balance_checked, now, last_version)
    decision, ending = _handover(decision, previous, config, gathered, now, last_version)
    if decision.changed and decision.ring is not None:
        decision = replace(decision, ring=showing_load(decision.ring, by_load))
    desired, published = None, previous
    keeps_verified = not decision.changed and from_configmap and configmap is not None and \
        gathered.memory.verified == Verified(configmap.name, configmap.resource_version,
                                      config.prometheus_relabel)
    if decision.ring is not None and not keeps_verified:
        try:
            data = configmap_data(decision.ring, config.prometheus_relabel)
        except RingTooLarge as error:
            decision = Decision(previous, problem=Problem(Reason.RING_TOO_LARGE, str(error)),
                                observed=decision.observed)
        else:
            desired = DesiredConfigMap(config.configmap, data,
                                       {**MANAGED_BY, RING_LABEL: ring.name},
                                       owner_reference(ring.name, ring.uid),
                                       config.prometheus_relabel, data_digest(data))
            published = decision.ring
    watching_since = gathered.memory.watching_since or now_text
    balanced = balance_condition(config, published, by_load)
    status = build_status(ring, config, decision.problem, source, decision, now_text,
                          acks=gathered.acks, ending=ending, watching_since=watching_since,
                          also=(balanced,) if balanced is not None else ())
    events = warnings(ring, decision.problem) + balance_warning(ring, balanced)
    if decision.changed and desired is not None:
        events = (handover_ended(ending, decision) if ending and ending.done else
                  rebalanced(decision) if decision.rebalanced else resharded(decision),) + events
        if decision.rebalanced is not None and published is not None:
            status["lastRebalance"] = last_rebalance(decision.rebalanced, published.version,
                                                     now_text)
    requeue_after = _requeue(decision, now)
    if balance_checked is not None and _quiet(decision, previous):  # the next rebalance then
        due = max(0.0, balance_checked + config.balance.interval - now)
        requeue_after = due if requeue_after is None else min(requeue_after, due)
    handover_since = _handover_since(decision, gathered, now)
    if handover_since is not None and decision.problem is None:
        # (With a problem the handover waits for the problem to go: no timer, no busy loop.)
        due = max(0.0, handover_since + config.handover_timeout - now)
        requeue_after = due if requeue_after is None else min(requeue_after, due)
    converging = converging_due(status, now_text, watching_since)
    if converging is not None:  # so that Stalled (NotConverged) comes without another event
        requeue_after = converging if requeue_after is None else min(requeue_after, converging)
    if source is not None and source.permission_denied and \
            (config.token is not None or config.credentials is not None):
        # The token may have been rotated in its Secret: no event says so, so look again.
        requeue_after = RECHECK if requeue_after is None else min(requeue_after, RECHECK)
    change = decision if decision.changed and desired is not None else None
    memory = replace(gathered.memory, handover_since=handover_since,
                     watching_since=watching_since,
                     pending_since=_pending_since(decision, gathered.memory.pending_since, now),
                     loads=measured.smoothed, balance_checked=balance_checked)
    _show_measured_load(status, ring.status.get("measuredLoad"), published, measured, now_text)
    if desired is not None:
        memory = replace(memory, last_published_digest=text_digest(desired.data["ring.json"]),
                         last_published_ring=published, verified=None)
    if change is not None and desired is not None:
        memory = replace(memory, last_publish=now,
                         last_publish_bytes=sum(map(len, desired.data.values())))
    return PassPlan(status=status, subscribe=True, configmap=desired, published=published,
                    events=events, requeue_after=requeue_after, memory=memory, change=change)


@dataclass(frozen=True)
class MeasuredLoads:
    smoothed: loads.Smoothed | None  # the members' load reports, smoothed, to remember
    per_shard: np.ndarray | None = None  # one load per shard of the published ring (None: no
    # fresh report)
    reporting: int = 0  # members with a fresh report


def _shard_loads(previous: ringfile.RingFile | None, gathered: Gathered, now_text: str,
                 half_life: float) -> MeasuredLoads:
    """The load of each shard of the published ring, from the reports the members' agents write
    with their acknowledgements."""
    if previous is None:
        return MeasuredLoads(gathered.memory.loads)
    shards = previous.assignment.shards
    now = epoch(now_text)
    # An agent's clock ahead of ours would hold its reports back, and keep them fresh forever.
    reports = [replace(r, at=min(r.at, now)) if now is not None else r
               for r in load_reports(gathered.acks, shards)]
    if not reports and gathered.memory.loads is None:
        return MeasuredLoads(None)
    smoothed = loads.smooth(gathered.memory.loads, reports, half_life, shards)
    if now is None:
        return MeasuredLoads(smoothed)
    fresh = len({r.member for r in reports if now - r.at <= loads.STALE_AFTER})
    return MeasuredLoads(smoothed, loads.shard_loads(smoothed, shards, now, loads.STALE_AFTER),
                         fresh)


def _show_measured_load(status: dict[str, Any], shown: Any,
                        published: ringfile.RingFile | None, measured: MeasuredLoads,
                        now_text: str) -> None:
    """status.measuredLoad, while some report is fresh (``shown``: what the status shows now,
    kept for SHOWN_EVERY seconds unless who reports or the published version changes)."""
    per_shard = measured.per_shard
    if published is None or per_shard is None or len(per_shard) != published.assignment.shards:
        return
    age = seconds_between(str(shown.get("time", "")), now_text) \
        if isinstance(shown, dict) else None
    if isinstance(shown, dict) and shown.get("reporting") == measured.reporting and \
            shown.get("ringVersion") == published.version and \
            age is not None and 0 <= age < loads.SHOWN_EVERY:
        status["measuredLoad"] = shown
        return
    members = published.assignment.members
    weights = np.array([m.weight for m in members], dtype=np.float64)
    status["measuredLoad"] = {
        **loads.measured(per_shard, [m.id for m in members], weights,
                         published.assignment.table, measured.reporting, now_text),
        "ringVersion": published.version}


def _rebalance(decision: Decision, previous: ringfile.RingFile | None, config: RingConfig,
               shard_load: np.ndarray | None, checked: float | None, now: float,
               last_version: int) -> tuple[Decision, float | None]:
    """A rebalance by load, when one is due: the ring balances by load, a load is measured, the
    published ring is what the source reports (nothing waits, nothing is wrong) and no handover
    is in flight. The interval counts from the last check (the first pass with loads starts
    it). Returns the decision and when the last check ran (None: not balancing by load)."""
    if shard_load is None or previous is None or \
            len(shard_load) != previous.assignment.shards:
        return decision, None
    if checked is None:
        return decision, now
    if not _quiet(decision, previous) or now < checked + config.balance.interval:
        return decision, checked
    return rebalance(config, previous, shard_load, last_version, decision.observed), now


def _quiet(decision: Decision, previous: ringfile.RingFile | None) -> bool:
    """Nothing else is on its way: the published ring stays as it is (no new version, nothing
    waiting, nothing wrong, the source answered) and no handover is in flight."""
    return not decision.changed and decision.problem is None and \
        decision.wait_until is None and decision.observed is not None and \
        previous is not None and decision.ring is previous and not previous.handover


def _predecessors(configmap: ConfigMapView, ring: RingObject) -> bool:
    """Whether ``configmap`` is the one a deleted ShardRing of this name published (this one
    deleted and created again before the garbage collector took it): taken over, not a
    conflict for a person to resolve. (Two rings of one name cannot both exist.)"""
    return all(configmap.labels.get(k) == v for k, v in MANAGED_BY.items()) and \
        configmap.labels.get(RING_LABEL) == ring.name and configmap.controller_uid is not None


def _previous(ring: RingObject, configmap: ConfigMapView | None, gathered: Gathered
              ) -> tuple[ringfile.RingFile | None, bool]:
    """The published ring: the ConfigMap's (True), else the one this operator last wrote, which
    restores a deleted or mangled ConfigMap, or one holding another ring's ring.json. What this
    operator wrote itself is not parsed again: the worker carries it parsed, and knows it by its
    text's digest."""
    parsed = gathered.memory.last_published_ring
    if gathered.memory.holds(configmap):
        return parsed, True
    if configmap is not None and configmap.ring_json is not None:
        try:
            found = ringfile.parse(configmap.ring_json)
        except ringfile.RingFileError:
            return parsed, False
        ours = {"namespace": ring.namespace, "name": ring.name}
        if not found.shard_ring or found.shard_ring == ours:
            return found, True
        if parsed is None and found.hash == ring.status.get("ringHash"):
            # Another ring's file, but this ring's assignment, as its status says (two rings over
            # one service; a copy): after a restart, the base that moves nothing.
            return replace(found, shard_ring=ours,
                           version=int(ring.status.get("ringVersion") or found.version)), False
    return parsed, False


def _decide(ring: RingObject, config: RingConfig, source: SourceState | None,
            previous: ringfile.RingFile | None, gathered: Gathered, now: float,
            limits: Limits, shard_load: np.ndarray | None) -> Decision:
    if source is not None and source.refused:
        reason = Reason.INVALID_FILTER if config.query.filter else Reason.INVALID_QUERY
        return Decision(previous, problem=Problem(
            reason, f"{source.error}. Fix spec.service. {kept(previous)}"))
    if source is not None and source.over_limit:
        return Decision(previous, problem=Problem(
            Reason.LIMIT_EXCEEDED, f"{source.error}. {kept(previous)}"))
    if source is None or source.error is not None or source.snapshot is None:
        return Decision(previous)  # the source is unreachable or silent: publish nothing new
    instances = len(source.snapshot.instances)
    if instances > limits.max_members:
        return _over_limit(previous, f"the query returns {instances} instances, more than this "
                           f"operator's maxMembers limit ({limits.max_members})",
                           "narrow spec.service (tags, nodeMeta, filter)")
    try:
        membership = _membership(source.snapshot, config)
    except MembershipError as error:
        return Decision(previous, problem=Problem(Reason.INVALID_MEMBERSHIP,
                                                  f"{error}. {kept(previous)}"))
    cost = work(config.ring_spec, len(membership.members))
    if cost > limits.max_ring_work:
        return _over_limit(previous, f"computing this ring ({config.ring_spec.algorithm.value}, "
                           f"{len(membership.members)} members) would cost {cost} units, more "
                           f"than this operator's maxRingWork limit ({limits.max_ring_work})",
                           "lower spec.virtualNodes or spec.shards, or use algorithm: balanced",
                           observed=len(membership.members))
    # decide() weighs memberships against the assignment; a handover is this module's business.
    return decide(config, membership, source.snapshot.index, _without_handover(previous),
                  shard_ring={"namespace": ring.namespace, "name": ring.name}, now=now,
                  seen_at=source.snapshot.received, pending_since=gathered.memory.pending_since,
                  last_version=int(ring.status.get("ringVersion") or 0),
                  not_before=_not_before(gathered, limits),
                  # Only the ring this operator published itself may be taken as it is; one
                  # edited by someone else, or written by another version, is planned again.
                  own=previous is not None and previous is gathered.memory.last_published_ring,
                  shard_load=shard_load)


def _membership(snapshot: Snapshot, config: RingConfig) -> Membership:
    """The ring's members from the snapshot, read once per snapshot and membership rules (the
    reading is pure: whoever reads it next, with the same rules, gets the same answer)."""
    rules = ("members", config.identity, config.weight_from, config.zone_from, config.drain_from)
    found = snapshot.derived.get(rules)
    if found is None:
        try:
            found = members_from(snapshot.instances, *rules[1:])
        except MembershipError as error:
            found = error
        snapshot.derived[rules] = found
    if isinstance(found, MembershipError):
        raise MembershipError(str(found))
    return cast(Membership, found)


def _without_handover(ring: ringfile.RingFile | None) -> ringfile.RingFile | None:
    return handover.released(ring, ring.version) if ring is not None and ring.handover else ring


def _handover(decision: Decision, previous: ringfile.RingFile | None, config: RingConfig,
              gathered: Gathered, now: float, last_version: int
              ) -> tuple[Decision, handover.Progress | None]:
    """Make-before-break: a new version keeps the previous owners of planned moves serving
    beside the new ones; an unchanged one ends its handover once acknowledged or timed out."""
    ring = decision.ring
    if decision.changed and ring is not None:
        if config.handover_timeout <= 0 or not gathered.acks:
            # Off, or no member runs the ring agent: nobody could acknowledge, so a handover
            # would only delay every planned move by the timeout.
            return decision, None
        present = [*ring.assignment.ids, *ring.draining]
        moves = handover.planned_moves(previous, ring.assignment, present)
        return (replace(decision, ring=replace(ring, handover=moves)) if moves else decision), \
            None
    if previous is None or not previous.handover:
        return decision, None
    held = replace(decision, ring=previous)  # decide() saw it without its handover
    if decision.problem is not None:
        return held, None
    since = gathered.memory.handover_since if gathered.memory.handover_since is not None \
        else now
    state = handover.progress(previous, gathered.acks, since, now, config.handover_timeout)
    if state.done is None:
        return held, state
    ended = handover.released(previous, max(previous.version, last_version) + 1)
    # A membership change still stabilizing keeps its deadline (and its pending_since).
    return Decision(ended, changed=True, wait_until=decision.wait_until,
                    observed=decision.observed), state


def _handover_since(decision: Decision, gathered: Gathered, now: float) -> float | None:
    ring = decision.ring
    if ring is None or not ring.handover:
        return None
    if decision.changed or gathered.memory.handover_since is None:
        return now
    return gathered.memory.handover_since


def _not_before(gathered: Gathered, limits: Limits) -> float | None:
    last = gathered.memory
    if last.last_publish is None:
        return None
    intervals = max(1, -(-last.last_publish_bytes // BYTES_PER_PUBLISH_INTERVAL))
    return last.last_publish + limits.min_publish_interval * intervals


def _over_limit(previous: ringfile.RingFile | None, what: str, fix: str,
                observed: int | None = None) -> Decision:
    return Decision(previous, problem=Problem(
        Reason.LIMIT_EXCEEDED, f"{what}; {fix}, or ask the operator's administrators to raise "
                               f"it. {kept(previous)}"), observed=observed)


def _requeue(decision: Decision, now: float) -> float | None:
    return None if decision.wait_until is None else max(0.0, decision.wait_until - now)


def _pending_since(decision: Decision, pending_since: float | None, now: float) -> float | None:
    """When the change waiting out its window began: maxDelay counts from it. A pass that
    publishes, or keeps the last ring for a problem, ends it: a guard holding the ring through an
    outage is no churn, and the members returning wait out the window (its clock would have run
    through the outage, and the first membership the guards let through, half of them, was
    published at once)."""
    if decision.wait_until is not None:  # (a handover's release can publish while stabilizing)
        return now if pending_since is None else pending_since
    return None
