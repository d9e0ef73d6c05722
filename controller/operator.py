"""The kopf operator: handlers and one worker per ShardRing (the imperative shell).

Every ShardRing gets a RingWorker, served by a kopf daemon, so kopf stops it when the ring is deleted,
when the operator exits, and when a peer with a higher priority becomes active (standby replicas
write nothing). Kubernetes events (the ring changed, its ConfigMap changed) and Consul events (its
shared watcher saw a new membership) only wake the worker; the worker then reconciles
level-triggered: read what is, decide (reconcile.decide, pure), write what differs.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import kopf

from . import conditions, metrics, ringfile
from .conditions import Condition
from .consul_watch import Subscription, WatcherRegistry, WatchKey, token_digest
from .kube import (RING_LABEL, MANAGED_BY, ConfigMapView, Conflict, Kube, SecretMissing,
                   data_digest, owner_reference, view_from_dict)
from .membership import MembershipError, members_from
from .reconcile import Decision, Problem, decide
from .render import RingTooLarge, configmap_data
from .settings import OperatorSettings
from .spec import RingConfig, SpecError, parse_spec

log = logging.getLogger("shardring")
RETRY_MIN, RETRY_MAX = 1.0, 60.0
PARALLEL_PASSES = 8
RECHECK = 30.0  # for what no event announces: a token Secret appearing, a conflicting ConfigMap going
_UNKNOWN = object()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class RingLog(logging.LoggerAdapter):
    def process(self, msg, kwargs):
        return f"[{self.extra['ring']}] {msg}", kwargs


@dataclass
class OperatorState:
    settings: OperatorSettings
    kube: Kube
    registry: WatcherRegistry
    workers: dict[tuple[str, str], "RingWorker"] = field(default_factory=dict)
    # Passes in flight at once. More than the client's worker threads (6 on 2 cores) only queue
    # up holding rendered rings, and starve the event loop of turns for Consul and the watches.
    passes: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(PARALLEL_PASSES))

    def worker(self, namespace: str, name: str) -> "RingWorker":
        key = (namespace, name)
        if key not in self.workers:
            self.workers[key] = RingWorker(self, namespace, name)
        return self.workers[key]

    def conditions(self):
        for worker in list(self.workers.values()):
            for condition in (worker.body or {}).get("status", {}).get("conditions") or []:
                yield condition.get("type", ""), condition.get("status", "")

    def forget(self, namespace: str, name: str) -> None:
        metrics.forget_ring(namespace, name)
        worker = self.workers.pop((namespace, name), None)
        if worker:
            worker.wake()

    async def close(self) -> None:
        self.workers.clear()
        await self.registry.close()


STATE: OperatorState | None = None


class RingWorker:
    def __init__(self, state: OperatorState, namespace: str, name: str):
        self.state = state
        self.namespace, self.name = namespace, name
        self.log = RingLog(log, {"ring": f"{namespace}/{name}"})
        self.body: dict[str, Any] | None = None
        self.subscription: Subscription | None = None
        # ring.json as last published, kept as text (the ConfigMap view shares the string) and
        # parsed when needed: a parsed ring per worker cost ~35 MB over 1000 rings.
        self.last_published: str | None = None
        # (ConfigMap name, resourceVersion, relabel output) last checked to hold the ring's data.
        self.verified: tuple[str, str, bool] | None = None
        self.pending_since: float | None = None
        self.last_status: dict[str, Any] | None = None
        self.last_problem: str | None = None
        # The owned ConfigMap as last seen (watch events and our own writes keep it fresh), so a
        # wake does not cost a GET; _UNKNOWN until first read, None when it does not exist.
        self.configmap: tuple[str, ConfigMapView | None] | object = _UNKNOWN
        # Inputs of the last completed pass: waking with the same inputs does nothing (our own
        # status patches echo back as events).
        self.fingerprint: tuple | None = None
        self.deadline: float | None = None
        self.writes = 0  # ConfigMap writes, for tests and metrics
        self.passes = 0  # reconcile passes: a bad spec must not make this climb (no hot loop)
        self._wake = asyncio.Event()

    # ---- lifecycle ---------------------------------------------------------------------------

    def observe(self, body: dict[str, Any]) -> None:
        self.body = body
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    async def serve(self, stopped: kopf.DaemonStopped) -> None:
        """Reconcile whenever woken, until kopf says stop (deletion, exit, or pausing)."""
        stopper = asyncio.create_task(self._wake_on(stopped))
        try:
            await self._loop(stopped)
        finally:
            stopper.cancel()
            await self._unsubscribe()

    async def _wake_on(self, stopped: kopf.DaemonStopped) -> None:
        await stopped.wait()
        self.wake()

    async def _loop(self, stopped: kopf.DaemonStopped) -> None:
        failures = 0
        while not stopped:
            self._wake.clear()
            self.passes += 1
            try:
                timeout = await self._reconcile_if_needed() if self.body else None
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - one ring's failure never stops the others
                failures += 1
                timeout = min(RETRY_MAX, RETRY_MIN * 2 ** (failures - 1))
                self.log.error("reconcile failed (retry in %.0f s): %s", timeout,
                               _safe(error), exc_info=failures == 1)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    async def _unsubscribe(self) -> None:
        if self.subscription:
            subscription, self.subscription = self.subscription, None
            await self.state.registry.unsubscribe(subscription)

    # ---- reconcile ---------------------------------------------------------------------------

    def _inputs(self) -> tuple:
        body = self.body or {}
        watcher = self.subscription.watcher if self.subscription else None
        configmap = "unknown" if self.configmap is _UNKNOWN else \
            (self.configmap[0], self.configmap[1] and self.configmap[1].resource_version)
        return (body.get("metadata", {}).get("uid"), body.get("metadata", {}).get("generation"),
                repr(body.get("spec")), watcher and watcher.key, watcher and watcher.version,
                repr(configmap))

    async def _reconcile_if_needed(self) -> float | None:
        now = time.monotonic()
        due = self.deadline is not None and now >= self.deadline
        if not due and self.fingerprint is not None and self.fingerprint == self._inputs():
            return None if self.deadline is None else self.deadline - now
        # The inputs as they were when this pass started: anything that changes while it runs
        # (a Consul reply, our own ConfigMap write) makes the next wake run another pass.
        async with self.state.passes:
            inputs = self._inputs()
            self.fingerprint = None
            timeout = await self.reconcile()
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.fingerprint = inputs
        return timeout

    def configmap_seen(self, name: str, view: ConfigMapView | None) -> None:
        self.configmap = (name, view)
        self.wake()

    async def _read_configmap(self, name: str) -> ConfigMapView | None:
        if self.configmap is not _UNKNOWN and self.configmap[0] == name:
            return self.configmap[1]
        view = await self.state.kube.read_configmap(self.namespace, name)
        self.configmap = (name, view)
        return view

    async def reconcile(self) -> float | None:
        """One level-triggered pass. Returns seconds until it must run again (None: when woken)."""
        body = self.body
        generation = int(body["metadata"].get("generation") or 0)
        try:
            config = parse_spec(self.name, body.get("spec") or {})
        except SpecError as error:
            await self._unsubscribe()
            await self._report(None, Problem("InvalidSpec", str(error)), consul=None)
            return None
        if config.query.connection not in self.state.settings.connections:
            await self._unsubscribe()
            known = ", ".join(sorted(self.state.settings.connections))
            await self._report(config, Problem(
                "UnknownConnection", f"spec.consul.connection {config.query.connection!r} is not "
                f"configured on the operator (configured: {known})"), consul=None)
            return None
        if config.suspend:
            await self._unsubscribe()
            await self._report(config, None, consul=None, suspended=True)
            return None
        token = None
        if config.token:
            try:
                token = await self.state.kube.read_secret_key(self.namespace, config.token.secret,
                                                              config.token.key)
            except SecretMissing as error:
                await self._unsubscribe()
                await self._report(config, Problem("SecretMissing", str(error)), consul=None)
                return RECHECK
        self._subscribe(config, token)
        watch = self.subscription.state
        if watch.snapshot is None and watch.error is None:
            return None  # the first reply wakes us
        configmap = await self._read_configmap(config.configmap)
        uid = body["metadata"]["uid"]
        if configmap is not None and configmap.controller_uid != uid:
            self.configmap = _UNKNOWN  # not watched (not ours): read it again next time
            await self._report(config, Problem(
                "ConfigMapConflict", f"ConfigMap {config.configmap!r} already exists and is not "
                f"owned by this ShardRing; it is left untouched. Delete or rename it, or set "
                f"spec.configMap.name"), consul=watch)
            return RECHECK
        previous = self._previous(configmap)
        decision = self._decide(config, watch, previous, generation)
        if decision.ring is not None and not self._still_published(config, configmap, decision,
                                                                   previous):
            try:
                data = configmap_data(decision.ring, config.prometheus_relabel)
            except RingTooLarge as error:
                # The previous ConfigMap stays exactly as it is.
                decision = Decision(previous, problem=Problem("RingTooLarge", str(error)))
                data = None
            if data is not None:
                try:
                    published = await self._write_configmap(config, configmap, data, body)
                except Conflict:
                    self.configmap = _UNKNOWN
                    return RETRY_MIN
                self.last_published = published.ring_json
                self.verified = (published.name, published.resource_version,
                                 config.prometheus_relabel)
        if decision.changed:
            self.pending_since = None
            self._announce(decision)
            self._measure(decision, watch)
        elif decision.wait_until is not None and self.pending_since is None:
            self.pending_since = time.monotonic()
        elif decision.wait_until is None and decision.problem is None:
            self.pending_since = None
        await self._report(config, decision.problem, consul=watch, decision=decision)
        if decision.wait_until is not None:
            return max(0.0, decision.wait_until - time.monotonic())
        return None

    def _still_published(self, config: RingConfig, configmap: ConfigMapView | None,
                         decision: Decision, previous: ringfile.RingFile | None) -> bool:
        """The decision keeps the ring read from a ConfigMap already found to hold exactly what
        it renders to: rendering it again would only confirm that (most passes under churn wait
        out a stabilization window)."""
        return decision.ring is previous and configmap is not None and \
            self.verified == (configmap.name, configmap.resource_version, config.prometheus_relabel)

    def _subscribe(self, config: RingConfig, token: str | None) -> None:
        key = WatchKey(config.query, token_digest(token))
        if self.subscription and self.subscription.watcher.key == key:
            return
        old = self.subscription
        self.subscription = self.state.registry.subscribe(config.query, token, self.wake)
        if old:
            asyncio.create_task(self.state.registry.unsubscribe(old))

    def _previous(self, configmap) -> ringfile.RingFile | None:
        if configmap is not None and configmap.ring_json is not None:
            try:
                return ringfile.parse(configmap.ring_json)
            except ringfile.RingFileError as error:
                self.log.warning("published ring.json is unreadable (%s); restoring the last "
                                 "ring this operator published", error)
        return ringfile.parse(self.last_published) if self.last_published else None

    def _decide(self, config: RingConfig, watch, previous, generation: int) -> Decision:
        if watch.error is not None or watch.snapshot is None:
            return Decision(previous)  # Consul unreachable: publish nothing new
        try:
            membership = members_from(watch.snapshot.entries, config.identity,
                                      config.weight_from, config.zone_from)
        except MembershipError as error:
            return Decision(previous, problem=Problem("InvalidMembership", str(error)))
        status = (self.body or {}).get("status") or {}
        return decide(config, membership, watch.snapshot.index, previous,
                      ring_meta={"namespace": self.namespace, "name": self.name},
                      now=time.monotonic(), seen_at=watch.snapshot.received,
                      pending_since=self.pending_since,
                      last_version=int(status.get("ringVersion") or 0))

    async def _write_configmap(self, config: RingConfig, current, data: dict[str, str],
                               body: dict[str, Any]) -> ConfigMapView:
        """The ConfigMap as it now is: written only if it differs from ``data``."""
        labels = {**MANAGED_BY, RING_LABEL: self.name}
        if current is not None and current.data_digest == data_digest(data) and \
                all(current.labels.get(k) == v for k, v in labels.items()):
            return current  # nothing changed, nothing written
        if current is not None:
            labels = {**current.labels, **labels}
        written = await self.state.kube.write_configmap(
            self.namespace, config.configmap, data, labels, owner_reference(body),
            current.resource_version if current else None)
        self.configmap = (config.configmap, written)
        self.writes += 1
        metrics.CONFIGMAP_WRITES.labels(self.namespace, self.name).inc()
        self.log.info("ConfigMap %s %s", config.configmap, "updated" if current else "created")
        return written

    def _measure(self, decision: Decision, watch) -> None:
        labels = (self.namespace, self.name)
        metrics.RESHARDS.labels(*labels).inc()
        metrics.SHARDS_MOVED.labels(*labels).inc(decision.moved)
        metrics.RING_MEMBERS.labels(*labels).set(len(decision.ring.assignment.members))
        metrics.RING_VERSION.labels(*labels).set(decision.ring.version)
        if watch.snapshot is not None:
            metrics.PUBLISH_LATENCY.observe(time.monotonic() - watch.snapshot.received)

    def _announce(self, decision: Decision) -> None:
        ring = decision.ring
        message = (f"ring version {ring.version}: {len(ring.assignment.members)} members "
                   f"(+{decision.added} -{decision.removed}), {decision.moved} shard replicas moved")
        self.log.info("resharded: %s", message)
        kopf.event(self.body, type="Normal", reason="Resharded", message=message)

    async def _report(self, config: RingConfig | None, problem: Problem | None, consul,
                      decision: Decision | None = None, suspended: bool = False) -> None:
        body = self.body
        generation = int(body["metadata"].get("generation") or 0)
        current = dict(body.get("status") or {})
        status: dict[str, Any] = {k: v for k, v in current.items() if k != "conditions"}
        status["observedGeneration"] = generation
        ring = decision.ring if decision else None
        if config is not None:
            status["configMapName"] = config.configmap
        if ring is not None:
            loads = ring.assignment.loads.values()
            status.update(members=len(ring.assignment.members), shards=ring.assignment.shards,
                          ringVersion=ring.version, ringHash=ring.hash,
                          consulIndex=ring.consul_index,
                          load={"min": min(loads, default=0), "max": max(loads, default=0)})
        if decision is not None and decision.changed:
            status["lastChange"] = {"time": _now(), "added": decision.added,
                                    "removed": decision.removed, "movedShards": decision.moved}
        wanted = self._conditions(problem, consul, decision, suspended)
        status["conditions"] = conditions.merge(current.get("conditions"), wanted, generation,
                                                _now())
        if status == current or status == self.last_status:
            return
        if problem and problem.reason != self.last_problem:
            self.log.warning("%s: %s", problem.reason, problem.message)
            kopf.event(body, type="Warning", reason=problem.reason, message=problem.message)
        self.last_problem = problem.reason if problem else None
        try:
            patched = await self._patch_status(status, body)
        except Conflict:
            self.wake()  # changed again meanwhile: the next pass starts from the fresh object
            return
        self.last_status = status
        self.body = _plain({**body, "status": patched.get("status", status),
                            "metadata": patched.get("metadata", body["metadata"])})

    async def _patch_status(self, status: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """Patch at the known resourceVersion; after a conflict (kopf's finalizer, a spec edit),
        re-read once and patch at the fresh one."""
        try:
            return await self.state.kube.patch_status(
                self.namespace, self.name, status, body["metadata"].get("resourceVersion"))
        except Conflict:
            fresh = await self.state.kube.read_ring(self.namespace, self.name)
            if fresh is None:
                raise
            self.body = _plain(fresh)
            if fresh.get("spec") != body.get("spec"):
                raise
            return await self.state.kube.patch_status(
                self.namespace, self.name, status, fresh["metadata"].get("resourceVersion"))

    @staticmethod
    def _conditions(problem: Problem | None, consul, decision: Decision | None,
                    suspended: bool) -> list[Condition]:
        published = decision is not None and decision.ring is not None
        if consul is None:
            reachable = Condition("ConsulReachable", None, "NotQueried",
                                  "no Consul query is running for this ring")
        elif consul.error:
            reachable = Condition("ConsulReachable", False,
                                  "PermissionDenied" if consul.permission_denied else "QueryFailed",
                                  f"{consul.error}; the last published ring is kept")
        else:
            reachable = Condition("ConsulReachable", True, "QuerySucceeded", "")
        waiting = decision is not None and decision.wait_until is not None
        stable = Condition("Stable", not waiting, "Stabilizing" if waiting else "Settled",
                           "a membership change is waiting out spec.stabilization.window"
                           if waiting else "")
        degraded = Condition("Degraded", problem is not None,
                             problem.reason if problem else "AsExpected",
                             problem.message if problem else "")
        if suspended:
            ready = Condition("Ready", False, "Suspended",
                              "spec.suspend is true; the last ConfigMap is kept as it is")
        elif problem is not None:
            ready = Condition("Ready", False, problem.reason, problem.message)
        elif consul is not None and consul.error:
            ready = Condition("Ready", False, "ConsulUnreachable", reachable.message)
        elif not published:
            ready = Condition("Ready", False, "Pending", "waiting for the first Consul reply")
        else:
            ready = Condition("Ready", True, "Published", "the ConfigMap holds the current ring")
        return [ready, reachable, stable, degraded]


def _safe(error: BaseException) -> str:
    """An exception's text is only its type: client errors can echo request headers."""
    return type(error).__name__


# ---- kopf wiring ---------------------------------------------------------------------------------

@kopf.on.startup()
async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    global STATE
    # Kopf's bookkeeping lives in annotations, so the structural schema never prunes it.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="shardring.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="shardring.io")
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    # A standby takes over this long after the active replica stopped renewing its record.
    settings.peering.lifetime = 15
    operator_settings = OperatorSettings.from_env()
    STATE = OperatorState(operator_settings, Kube(),
                          WatcherRegistry(dict(operator_settings.connections)))
    if operator_settings.metrics_port:
        metrics.serve(operator_settings.metrics_port, lambda: STATE.conditions() if STATE else [],
                      lambda: len(STATE.registry.watchers) if STATE else 0)


@kopf.on.login()
def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # kopf's client-library login reads KUBECONFIG at import time; these read it at login time.
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.cleanup()
async def _cleanup(**_: Any) -> None:
    global STATE
    if STATE is not None:
        await STATE.close()
        STATE = None


@kopf.on.event("shardring.io", "v1alpha1", "shardrings")
async def _ring_event(event: dict[str, Any], body: kopf.Body, namespace: str, name: str,
                      **_: Any) -> None:
    if STATE is None:
        return
    if event.get("type") == "DELETED" or body.get("metadata", {}).get("deletionTimestamp"):
        STATE.forget(namespace, name)
        return
    STATE.worker(namespace, name).observe(_plain(body))


@kopf.daemon("shardring.io", "v1alpha1", "shardrings", cancellation_timeout=10.0)
async def _ring_daemon(stopped: kopf.DaemonStopped, body: kopf.Body, namespace: str, name: str,
                       **_: Any) -> None:
    if STATE is None:
        return
    worker = STATE.worker(namespace, name)
    if worker.body is None:
        worker.observe(_plain(body))
    await worker.serve(stopped)


@kopf.on.event("", "v1", "configmaps", labels=MANAGED_BY)
async def _configmap_event(event: dict[str, Any], body: kopf.Body, namespace: str, name: str,
                           **_: Any) -> None:
    ring = (body.get("metadata", {}).get("labels") or {}).get(RING_LABEL)
    if STATE is not None and ring and (namespace, ring) in STATE.workers:
        deleted = event.get("type") == "DELETED"
        STATE.workers[(namespace, ring)].configmap_seen(name, None if deleted else
                                                        view_from_dict(dict(body)))


def _plain(body: Any) -> dict[str, Any]:
    """A copy of the ring's body that kopf will not mutate, without managedFields (a worker never
    reads them, and they are most of a small object's size)."""
    plain = copy.deepcopy(dict(body))
    plain["metadata"] = {k: v for k, v in plain.get("metadata", {}).items() if k != "managedFields"}
    return plain


def run_operator(namespaces: list[str], standalone: bool = False, peering: str | None = None,
                 priority: int | None = None, liveness: str | None = None,
                 log_format: str = "plain") -> int:
    if log_format == "json":
        kopf.configure(log_format=kopf.LogFormat.JSON)
    else:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if priority is None:
        # Peers with equal priorities all pause; a random one makes exactly one replica active.
        priority = random.randint(1, 1_000_000)
    kopf.run(standalone=standalone or None, clusterwide=not namespaces, namespaces=namespaces,
             peering_name=None if standalone else peering, priority=priority,
             liveness_endpoint=liveness)
    return 0
