"""kopf wiring: which Kubernetes events wake which ring's worker. Nothing is decided here.

Operator-wide state is the ``Operator`` object kopf carries as its memo (``kopf.run(memo=...)``):
it copies to itself, so every handler sees the same one. Every ShardRing gets a RingWorker served
by a kopf daemon, so kopf stops it when the operator exits and when a peer with a higher priority
becomes active (standby replicas write nothing); the ring's own deletion event retires it.

Rings carry no finalizer: nothing has to happen before a ring may go (its ConfigMap and agents'
Leases are garbage-collected through their ownerReferences), and a finalizer would make every ring
- and so `kubectl delete` of the CRDs or a namespace - hang whenever the operator is not running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from controller import metrics
from controller.core.acks import ACK_LABEL, Ack, ack_from_lease
from controller.core.views import CREDENTIALS_LABEL, MANAGED_BY, RING_LABEL, view_from_dict
from controller.kube.api import Kube, ensure_cluster_peering
from controller.kube.apihealth import ApiHealth
from controller.operator import collector, refusals, ringpages
from controller.operator.planning import PlanningThreads
from controller.operator.publish import KubeAdapter
from controller.operator.settings import OperatorConfig
from controller.operator.slots import PassSlots
from controller.operator.trim import Trimmer, glibc_trim
from controller.operator.worker import RingWorker
from controller.sources.base import SourceRegistry, SourceRouter
from controller.sources.consul.watch import WatcherRegistry
from controller.sources.etcd.watch import EtcdRegistry
from controller.sources.kubernetes.api import connection_from_client
from controller.sources.kubernetes.watch import KubernetesRegistry
from controller.sources.zookeeper.watch import ZooKeeperRegistry

# Passes in flight at once (slots.py: while passes wait, statuses wait for them). More than the
# client's worker threads (6 on 2 cores) only queue up holding rendered rings, and starve the
# event loop of turns for the watches.
PARALLEL_PASSES = 8
# How long an exit waits for Events still being posted (and old subscriptions ending).
BACKGROUND_AT_EXIT = 2.0


@dataclass
class Operator:
    """The operator's state: its configuration, adapters and one worker per ring."""

    config: OperatorConfig
    kube: KubeAdapter | None = None  # set at startup (a test may set its own beforehand)
    sources: SourceRegistry | None = None
    workers: dict[tuple[str, str], RingWorker] = field(default_factory=dict)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    passes: PassSlots | None = None
    planning: PlanningThreads | None = None
    # Ring agents' acknowledgements by (namespace, ring), then by Lease name.
    acks: dict[tuple[str, str], dict[str, Ack]] = field(default_factory=dict)
    api_health: ApiHealth = field(default_factory=ApiHealth)
    quiet_retries: logging.Filter | None = None  # on the log handlers while it runs
    unwrap_watches: Callable[[], None] | None = None  # refusals.install's undo while it runs
    # Our ConfigMaps by (namespace, name), from kopf's index of them: kopf serves no ring before
    # its first listing is complete (None until a handler has been given it).
    configmaps: Mapping[Any, Any] | None = None
    trimmer: Trimmer = field(default_factory=lambda: Trimmer(trim=glibc_trim()))

    def __copy__(self) -> Operator:
        return self  # kopf copies the memo per object; all of them must share this one

    def start(self) -> None:
        self.kube = self.kube or Kube(health=self.api_health)
        limit = self.config.limits.max_reply_bytes
        self.sources = self.sources or SourceRouter({
            "consul": WatcherRegistry(dict(self.config.connections), limit),
            "etcd": EtcdRegistry(dict(self.config.etcd), limit),
            "zookeeper": ZooKeeperRegistry(dict(self.config.zookeeper)),
            # The same API server and credentials as the operator's own client.
            "kubernetes": KubernetesRegistry(
                connection_from_client(self.kube.api.configuration)
                if isinstance(self.kube, Kube) else None, limit)})
        self.passes = PassSlots(PARALLEL_PASSES)
        self.planning = PlanningThreads(2)

    async def close(self) -> None:
        self.trimmer.stop()
        self.workers.clear()
        if isinstance(self.kube, Kube):
            self.kube.in_flight.stop_waiting()  # the Events still waiting for a quiet moment
        pending = [task for task in self.background if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=BACKGROUND_AT_EXIT)
        if self.sources is not None:
            await self.sources.close()
        if self.planning is not None:
            self.planning.shutdown(wait=False, cancel_futures=True)

    def worker(self, namespace: str, name: str, uid: str) -> RingWorker:
        """The worker of the ShardRing ``uid``. A ring deleted and created again under the same
        name is another ring: kopf may hand us the new one before the old one's deletion, so the
        old worker retires here, and that late deletion (another uid) is ignored."""
        key = (namespace, name)
        existing = self.workers.get(key)
        if existing is not None and existing.uid != uid:
            existing.retire()
            existing = None
        if existing is None:
            assert self.kube is not None and self.sources is not None
            existing = self.workers[key] = RingWorker(
                namespace, name, kube=self.kube, sources=self.sources,
                connections=self.config.access(), limits=self.config.limits, passes=self.passes,
                background=self.background, planning=self.planning,
                acks=self.acks.setdefault(key, {}), uid=uid,
                listed=self._listed if self.configmaps is not None else None,
                worked=self.trimmer.worked)
        return existing

    def _listed(self, namespace: str, name: str) -> bool:
        return self.configmaps is not None and (namespace, name) in self.configmaps

    def unwatched(self, namespace: str | None, plural: str) -> None:
        """kopf stopped watching ShardRings (in ``namespace``, or everywhere): perhaps their CRD
        was deleted, and then no deletion event comes. Each worker finds out whether its ring
        is still there before it does anything more (a ring that never published held nothing
        that would show it: it lived on, and published once the way was clear)."""
        if plural != "shardrings":
            return
        for (ring_namespace, _), worker in list(self.workers.items()):
            if namespace is None or ring_namespace == namespace:
                worker.unwatched()

    def forget(self, namespace: str, name: str, uid: str) -> None:
        worker = self.workers.get((namespace, name))
        if worker is None or worker.uid != uid:
            return  # another ring of that name has taken its place (or it is gone already)
        metrics.forget_ring(namespace, name)
        del self.workers[(namespace, name)]
        if not worker.retired and not worker.namespace_terminating:  # (else it said so)
            view = worker.seen.view if worker.seen is not None else None
            worker.log.info("the ShardRing was deleted; %s", "it is no longer published (its "
                            "ConfigMap goes with it)" if view is not None and
                            view.controller_uid == worker.uid else "it had published nothing")
        worker.retire()
        if not self.acks.get((namespace, name)):
            self.acks.pop((namespace, name), None)

    def conditions(self) -> Iterator[metrics.RingCondition]:
        for worker in list(self.workers.values()):
            if not worker.serving:
                continue
            for condition in (worker.body or {}).get("status", {}).get("conditions") or []:
                yield metrics.RingCondition(worker.namespace, worker.name,
                                            condition.get("type", ""),
                                            condition.get("status", ""),
                                            condition.get("reason", ""))


    def imbalances(self) -> Iterator[metrics.RingImbalance]:
        for worker in list(self.workers.values()):
            measured = (worker.body or {}).get("status", {}).get("measuredLoad") or {}
            if worker.serving and isinstance(measured.get("imbalance"), (int, float)):
                yield metrics.RingImbalance(worker.namespace, worker.name,
                                            float(measured["imbalance"]))


def quiet_generator_closing(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """At exit, asyncio closes the generators still open: kopf's watch of a kind whose CRD was
    deleted under it can fail to close ("generator didn't stop after athrow()"). The operator is
    ending anyway: one line, no traceback. Anything else goes to asyncio's own handler."""
    if str(context.get("message", "")).startswith(
            "an error occurred during closing of asynchronous generator"):
        logging.getLogger("shardring").debug("at exit, a watch did not close cleanly: %r",
                                             context.get("exception"))
        return
    loop.default_exception_handler(context)


@kopf.on.startup()
async def _startup(settings: kopf.OperatorSettings, memo: Operator, **_: Any) -> None:
    asyncio.get_running_loop().set_exception_handler(quiet_generator_closing)
    # Kopf's bookkeeping lives in annotations, so the structural schema never prunes it.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="shardring.io")
    settings.persistence.diffbase_storage = NoEssence(prefix="shardring.io")
    # kopf says "Handler '...' succeeded." at INFO for every event it hands us (each ConfigMap,
    # Lease and status echo: thousands of lines at a cold start); our own lines say what happened.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # Only kopf's own warnings become Events: an Event per handler run is noise (and in a
    # terminating namespace each would be refused and retried). Ours are posted explicitly.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    # A standby takes over this long after the active replica stopped renewing its record.
    settings.peering.lifetime = 15
    # Replicas meet in the ClusterKopfPeering even when they serve a list of namespaces: kopf
    # would otherwise want a KopfPeering object (and the rights to it) in each served namespace.
    settings.peering.clusterwide = True
    # Only our ConfigMaps and the Secrets marked as tokens reach the operator: the API server
    # filters them (a handler's labels= alone would stream every ConfigMap in the cluster here).
    settings.watching.label_selectors["", "v1", "configmaps"] = _selector(MANAGED_BY)
    settings.watching.label_selectors["", "v1", "secrets"] = \
        _selector({CREDENTIALS_LABEL: "true"})
    settings.watching.label_selectors["coordination.k8s.io", "v1", "leases"] = \
        _selector({ACK_LABEL: "true"})
    # A worker's exit (finish the pass in flight, unsubscribe from its watcher) takes more than
    # kopf's few zero-time cycles; without this kopf cancels it and warns on every deletion.
    settings.background.instant_exit_timeout = 5.0
    # An API server outage is one line when it starts and one when it ends (apihealth), not
    # kopf's ERROR line per attempt of every watch.
    memo.quiet_retries = memo.api_health.quiet_kopf_retries()
    for handler in logging.getLogger().handlers:
        handler.addFilter(memo.quiet_retries)
    if settings.peering.mandatory and not settings.peering.standalone:
        # Only a peering asked for by name (--peering): kopf's auto-detection must stay free to
        # find none and run standalone.
        await asyncio.to_thread(ensure_cluster_peering, settings.peering.name)
    memo.start()
    if isinstance(memo.kube, Kube):
        # A namespace served without its RoleBinding is said once and waits: the others are
        # served (kopf would retry its watches there for a minute, then stop the operator).
        memo.unwrap_watches = refusals.install(
            refusals.Refusals(memo.kube.may_list, ended=memo.unwatched), settings)
        memo.api_health.probe = memo.kube.api_answers
        memo.api_health.loop = asyncio.get_running_loop()
    memo.api_health.started()  # kopf's watches start once the startup handlers are done
    if memo.config.metrics_port:
        metrics.serve(memo.config.metrics_port, memo.conditions,
                      lambda: memo.sources.active_by_kind()
                      if isinstance(memo.sources, SourceRouter) else {},
                      memo.config.metrics_address,
                      ringpages.pages(lambda: memo.workers) if memo.config.ring_page else None,
                      memo.imbalances)
    collector.settle()  # everything is imported and set up: none of it is garbage


class NoEssence(kopf.AnnotationsDiffBaseStorage):
    """kopf builds an object's "essence" (a deep copy of all of it but its status) on every event,
    to compare it for on.create/on.update handlers. This operator has none (rings are reconciled
    by their workers, from whatever event wakes them), so the copy of every ring and ConfigMap
    was built only to be dropped: a tenth of the event loop's time at a cold start."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


@kopf.on.login()
def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # kopf's client-library login reads KUBECONFIG at import time; these read it at login time.
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.cleanup()
async def _cleanup(memo: Operator, **_: Any) -> None:
    memo.api_health.stop()
    if memo.unwrap_watches is not None:
        memo.unwrap_watches()
    await memo.close()
    if memo.quiet_retries is not None:
        for handler in logging.getLogger().handlers:
            handler.removeFilter(memo.quiet_retries)


@kopf.index("", "v1", "configmaps", labels=MANAGED_BY)
async def configmaps_listed(namespace: str | None, name: str, **_: Any) -> dict[Any, bool]:
    """Which of our ConfigMaps exist (only that: their data is read when needed). An index makes
    kopf list them all before it hands us any ring."""
    return {(namespace, name): True}


@kopf.on.event("shardring.io", "v1alpha1", "shardrings")
async def _ring_event(event: kopf.RawEvent, body: kopf.Body, namespace: str | None, name: str,
                      memo: Operator, **kwargs: Any) -> None:
    assert namespace is not None  # ShardRings are namespaced
    # kopf gives every handler its indexes (without it, rings read their ConfigMaps as before).
    memo.configmaps = kwargs.get("configmaps_listed")
    memo.api_health.answered()  # an event came through: the API answers
    # kopf keeps every ring's last body for its daemon (the very dict of this event), and the
    # daemon needs only its metadata (a worker that starts without a body reads the ring). The
    # worker keeps its own copy of the spec and status, so kopf's loses them here, and its
    # managedFields (the API server's record of who set which field, read by nobody): a
    # thousand rings do not keep them twice.
    raw = cast(dict[str, Any], event.get("object") or {})
    (raw.get("metadata") or {}).pop("managedFields", None)
    uid = body.get("metadata", {}).get("uid", "")
    if event.get("type") == "DELETED" or body.get("metadata", {}).get("deletionTimestamp"):
        memo.forget(namespace, name, uid)  # a pass in flight ends on the ring's 404, quietly
        return
    memo.worker(namespace, name, uid).observe(body)
    for key in ("spec", "status"):
        raw.pop(key, None)


@kopf.daemon("shardring.io", "v1alpha1", "shardrings", cancellation_timeout=10.0)
async def _ring_daemon(stopped: kopf.DaemonStopped, body: kopf.Body, namespace: str | None,
                       name: str, memo: Operator, **kwargs: Any) -> None:
    assert namespace is not None
    memo.configmaps = kwargs.get("configmaps_listed")
    uid = body.get("metadata", {}).get("uid", "")
    worker = memo.worker(namespace, name, uid)
    if worker.body is None:
        # A worker made after the event that fed the last one (kopf's kept body has no spec or
        # status once a worker copied them): the ring as it is now.
        assert memo.kube is not None
        fresh = body if "spec" in body else await memo.kube.read_ring(namespace, name)
        if fresh is None:
            memo.forget(namespace, name, uid)
            return
        worker.observe(fresh)
    await worker.serve(stopped)
    if worker.retired and memo.workers.get((namespace, name)) is worker:
        memo.forget(namespace, name, uid)  # it found the ring gone (a deletion we never saw)
    if (namespace, name) not in memo.workers:
        # Deleted: a pass that was still in flight may have recreated the ring's series.
        metrics.forget_ring(namespace, name)


def _without_finalizers(registry: kopf.OperatorRegistry) -> None:
    """kopf guards the object of every daemon with a finalizer, so that it can stop the daemon
    before the object goes (kopf#896: by design, not a setting). Ours needs no such guard: the
    ring's deletion event retires its worker (``Operator.forget``); a pass already in flight, or
    a deletion the watch never delivered, ends at the ring's 404 (``RingGone``), and whatever
    it wrote last goes with the ring's garbage collection. kopf removes the finalizer
    that older versions added from every ring it sees. test_install pins this down on a real
    API server, so a kopf upgrade that changes the registry fails there, not in production."""
    spawning = registry._spawning  # private: no public switch exists (see above)
    spawning._handlers[:] = [
        dataclasses.replace(handler, requires_finalizer=False)
        for handler in spawning._handlers]


_without_finalizers(kopf.get_default_registry())


@kopf.on.event("", "v1", "configmaps", labels=MANAGED_BY)
async def _configmap_event(event: kopf.RawEvent, body: kopf.Body, namespace: str | None,
                           name: str, memo: Operator, **_: Any) -> None:
    memo.api_health.answered()
    ring = (body.get("metadata", {}).get("labels") or {}).get(RING_LABEL)
    worker = memo.workers.get((namespace, ring)) if ring and namespace else None
    if worker is not None:
        deleted = event.get("type") == "DELETED"
        worker.configmap_seen(name, None if deleted else view_from_dict(dict(body)))


@kopf.on.event("", "v1", "secrets", labels={CREDENTIALS_LABEL: "true"})
async def _token_secret_event(event: kopf.RawEvent, body: kopf.Body, namespace: str | None,
                              name: str, memo: Operator, **_: Any) -> None:
    """A marked Secret appeared, changed (a rotated token) or went (or lost its mark: the
    selector then sends DELETED): its data is kept for the rings' passes, which look again at
    once."""
    memo.api_health.answered()
    if isinstance(memo.kube, Kube) and namespace is not None:
        gone = event.get("type") == "DELETED"
        memo.kube.secret_seen(namespace, name, None if gone else dict(body.get("data") or {}))
    for (ring_namespace, _ring), worker in list(memo.workers.items()):
        if ring_namespace == namespace and worker.credentials_secret == name:
            worker.token_changed()


@kopf.on.event("coordination.k8s.io", "v1", "leases", labels={ACK_LABEL: "true"})
async def _ack_event(event: kopf.RawEvent, body: kopf.Body, namespace: str | None, name: str,
                     memo: Operator, **_: Any) -> None:
    """A ring agent acknowledged a version (or its Lease went): the ring's convergence."""
    memo.api_health.answered()
    ack = None if event.get("type") == "DELETED" else ack_from_lease(dict(body))
    ring = (body.get("metadata", {}).get("labels") or {}).get(RING_LABEL)
    if not ring or namespace is None:
        return
    key = (namespace, ring)
    if ack is None:
        if memo.acks.get(key, {}).pop(name, None) is None:
            return
    else:
        memo.acks.setdefault(key, {})[name] = ack
    worker = memo.workers.get(key)
    if worker is not None:
        worker.acks_changed()
