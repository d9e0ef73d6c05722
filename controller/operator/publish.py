"""Carrying a pass plan's writes out for one ring: the ConfigMap, the status, events and metrics.

Every write is conditional on the resourceVersion the pass saw. The conflict policy: a 409 re-reads
what conflicted; a status computed for the ring's current generation is applied again at the fresh
version, anything else raises ``Conflict`` and the worker runs the pass again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from controller import metrics
from controller.core.events import Event
from controller.core.planner import DesiredConfigMap, PassPlan
from controller.core.source_state import SourceState
from controller.core.views import ConfigMapView, Conflict, RingGone
from controller.kube.apihealth import ApiUnreachable


class KubeAdapter(Protocol):
    """What the worker needs of Kubernetes (kube.Kube in production, fakes in fast tests)."""

    async def read_configmap(self, namespace: str, name: str) -> ConfigMapView | None: ...

    async def write_configmap(self, namespace: str, name: str, data: Mapping[str, str],
                              labels: Mapping[str, str], owner: Mapping[str, Any],
                              resource_version: str | None) -> ConfigMapView: ...

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any],
                           resource_version: str | None) -> dict[str, Any]: ...

    async def read_ring(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str: ...

    async def post_event(self, ring: Mapping[str, Any], kind: str, reason: str,
                         message: str) -> None: ...


def _reference(body: Mapping[str, Any]) -> dict[str, Any]:
    """What an Event needs of the ring: which object it is about (not a copy of all of it)."""
    metadata = body.get("metadata") or {}
    return {"metadata": {k: metadata.get(k) for k in ("namespace", "name", "uid")}}


def safe_text(error: BaseException) -> str:
    """An exception's text is only its type: client errors can echo request headers."""
    return type(error).__name__


def merge_patch(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """``wanted`` as a JSON merge patch over ``current``: a merge patch keeps what it does not
    name, at every depth, so a field the plan dropped (status.draining once nobody drains,
    lastChange.joined after a change that only removed) is named with an explicit null."""
    patch: dict[str, Any] = dict(wanted)
    for key, value in current.items():
        if key not in wanted:
            patch[key] = None
        elif isinstance(value, Mapping) and isinstance(wanted[key], Mapping):
            patch[key] = merge_patch(value, wanted[key])
    return patch


# A status that differs only by what membership churn moves is written at most this often.
OBSERVED_EVERY = 5.0
# What churn moves in a status besides the count the source reports: whether a change waits out
# its window. A member flapping every half second flipped both conditions (and their times) on
# every flip: a status write per flip for every ring over the service.
_CHURN_CONDITIONS = frozenset({("Stable", "Settled"), ("Stable", "Stabilizing"),
                               ("Reconciling", "Settled"), ("Reconciling", "Stabilizing")})


def _without_observed(status: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in status.items() if key != "observedMembers"}


def _beyond_churn(status: Mapping[str, Any]) -> dict[str, Any]:
    """``status`` without what churn alone moves."""
    kept = _without_observed(status)
    kept["conditions"] = [c for c in status.get("conditions") or []
                          if (c.get("type"), c.get("reason")) not in _CHURN_CONDITIONS]
    return kept


def _degraded(status: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Degraded" and c.get("status") == "True"
               for c in status.get("conditions") or [])


class Publisher:
    def __init__(self, kube: KubeAdapter, namespace: str, name: str,
                 log: logging.LoggerAdapter[Any], background: set[asyncio.Task[None]],
                 after_post: Callable[[], None] | None = None):
        self.kube = kube
        # Told when an Event was posted (the memory trimmer: Events wait for the rings' writes,
        # so a burst's last ones are posted after its last pass).
        self._after_post = after_post
        self.namespace, self.name = namespace, name
        self.log = log
        self._background = background  # Events in flight, kept referenced until posted
        # The status last written (plan.status itself: never mutated, shared with the body).
        self.written_status: dict[str, Any] | None = None
        # The problem last warned about. The planner warns when a problem begins, judged by the
        # status in the ring's body; a body that arrives while a pass is writing (another
        # writer's event) can predate our status and would make it warn twice.
        self._warned: tuple[str, str] | None = None
        self.writes = 0  # ConfigMap writes (tests and metrics)
        self._status_written_at = float("-inf")
        self.observed_due: float | None = None  # a status held back is due then (monotonic)
        self._observed_since: float | None = None  # when the count held back first changed
        # When a status that churn alone had changed (beyond the count) was last written, and
        # whether the one being written is such a status.
        self._churn_written_at = float("-inf")
        self._writing_churn = False

    async def configmap(self, desired: DesiredConfigMap,
                        current: ConfigMapView | None) -> ConfigMapView:
        """The ConfigMap as it now is: written only if it differs from ``desired``."""
        if current is not None and desired.matches(current):
            return current
        labels = {**current.labels, **desired.labels} if current is not None else desired.labels
        written = await self.kube.write_configmap(
            self.namespace, desired.name, desired.data, labels, desired.owner,
            current.resource_version if current is not None else None)
        self.writes += 1
        metrics.CONFIGMAP_WRITES.labels(self.namespace, self.name).inc()
        self.log.info("ConfigMap %s %s", desired.name, "updated" if current else "created")
        return written

    def status_due(self, status: dict[str, Any], body: Mapping[str, Any], now: float,
                   next_pass: float | None = None) -> bool:
        """Whether the status is to be written now: it differs from the body's (and from what
        this worker last wrote: an older event can still be on its way), by more than a count
        held back (``observed_due``: when that is due). ``next_pass``: seconds until the
        plan's next pass, if it has one."""
        self.observed_due, self._writing_churn = None, False
        if status == body.get("status") or status == self.written_status:
            self._observed_since = None
            return False
        # Against what the ring holds now: our last write (its echo may still be on its way;
        # nobody else writes the status), else the body's.
        holds = self.written_status if self.written_status is not None else \
            body.get("status") or {}
        if _beyond_churn(status) == _beyond_churn(holds):
            # Only what churn moves changed. Under churn every flip would be a status write for
            # every ring over the service, and the API server's queue of them held up the
            # writes that matter (a new version, a condition). The count alone waits until
            # OBSERVED_EVERY after the last status write; and, when the plan's next pass is that
            # near (under churn: the end of the change's window, which publishes and writes the
            # status anyway), for that pass: one write, not two, for each ring as churn stops
            # (the source's last replies, a second apart, each move the window). Whether a
            # change waits out its window is said at once, unless it was said within
            # OBSERVED_EVERY (a member flapping every half second flipped it on every flip).
            # Never more than twice OBSERVED_EVERY after the first change held back.
            only_count = _without_observed(status) == _without_observed(holds)
            since = now if self._observed_since is None else self._observed_since
            due = (self._status_written_at if only_count else self._churn_written_at) + \
                OBSERVED_EVERY
            if only_count and next_pass is not None and next_pass <= OBSERVED_EVERY and \
                    now + next_pass <= since + 2 * OBSERVED_EVERY:
                due = max(due, now + next_pass)
            if now < due:
                self._observed_since = since
                self.observed_due = due
                return False
            self._writing_churn = not only_count
        return True

    async def write_status(self, status: dict[str, Any], body: Mapping[str, Any],
                           now: float) -> dict[str, Any]:
        """Patch the status at the body's resourceVersion; returns the patched object."""
        metadata = body.get("metadata") or {}
        patch = merge_patch(body.get("status") or {}, status)
        try:
            patched = await self.kube.patch_status(self.namespace, self.name, patch,
                                                   metadata.get("resourceVersion"))
        except Conflict:
            # Someone else wrote the ring (kopf's own annotations, usually). A status computed
            # for the same generation still holds, so it goes in at the fresh version (its
            # lastChange would otherwise be lost); after a spec edit the pass is planned again.
            fresh = await self.kube.read_ring(self.namespace, self.name)
            fresh_metadata = (fresh or {}).get("metadata") or {}
            if fresh is None or fresh_metadata.get("uid") != metadata.get("uid"):
                raise RingGone(self.name) from None  # (re-created: another ring's status)
            if fresh_metadata.get("generation") != metadata.get("generation"):
                raise
            patched = await self.kube.patch_status(
                self.namespace, self.name, merge_patch(fresh.get("status") or {}, status),
                fresh_metadata.get("resourceVersion"))
        self.written_status = status
        self._status_written_at = now
        if self._writing_churn:
            self._churn_written_at = now
        self._observed_since = None
        return patched

    def events(self, plan: PassPlan, body: Mapping[str, Any], warnings: bool) -> None:
        """Posted beside the pass, never holding it up; the problem goes to the log too.
        ``warnings``: the Warning events (posted once the status recording the problem is
        written, so a failing status patch does not repeat them), else the others."""
        if warnings and not _degraded(plan.status):
            self._warned = None
        for event in plan.events:
            if (event.type == "Warning") != warnings:
                continue
            if event.type == "Warning":
                if (event.reason, event.message) == self._warned:
                    continue
                self._warned = (event.reason, event.message)
                self.log.warning("%s: %s", event.reason, event.message)
            elif event.reason == "Resharded":
                self.log.info("resharded: %s", event.message)
            metrics.EVENTS.labels(self.namespace, self.name, event.type, event.reason).inc()
            self.keep(asyncio.create_task(self._post(_reference(body), event)))

    def keep(self, task: asyncio.Task[None]) -> None:
        """Hold a background task (an Event, an old subscription's end) until it is done."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _post(self, body: dict[str, Any], event: Event) -> None:
        try:
            await self.kube.post_event(body, event.type, event.reason, event.message)
        except ApiUnreachable:
            pass  # the outage is said once for the operator (apihealth)
        except Exception as error:  # noqa: BLE001 - an Event is information, never a failure
            self.log.warning("could not post the %s event: %s", event.reason, safe_text(error))
        if self._after_post is not None:
            self._after_post()

    def measure(self, plan: PassPlan, source: SourceState | None, now: float) -> None:
        change = plan.change
        if change is None or change.ring is None:
            return
        labels = (self.namespace, self.name)
        metrics.RESHARDS.labels(*labels).inc()
        metrics.SHARDS_MOVED.labels(*labels).inc(change.moved)
        metrics.RING_MEMBERS.labels(*labels).set(len(change.ring.assignment.members))
        metrics.RING_VERSION.labels(*labels).set(change.ring.version)
        if change.rebalanced is not None:  # (moved for load: no membership change to time)
            metrics.REBALANCES.labels(*labels).inc()
        elif source is not None and source.snapshot is not None:
            metrics.PUBLISH_LATENCY.observe(now - source.snapshot.received)
