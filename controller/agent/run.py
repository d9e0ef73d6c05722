"""The agent's loop: each new ConfigMap version is swapped into the directory, rendered into this
member's Prometheus configuration if asked, reloaded into the workload, and acknowledged.

One thread follows the ConfigMap (``feed``); this one applies what it hands over, newest first,
and retries a failed reload or acknowledgement with backoff until it succeeds or a newer version
replaces it. Nothing here runs in an event loop: the agent is a process of its own.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from controller.agent import metrics
from controller.agent.feed import ConfigMapFeed, Seen, Unreachable, Update
from controller.agent.files import AtomicDir
from controller.agent.lease import LeaseWriter
from controller.agent.loadreport import LoadUnavailable, Measurement
from controller.agent.prometheus import PrometheusOutput, PrometheusRenderer, shares
from controller.agent.reload import Reload, ReloadFailed, prometheus_targets
from controller.client import Ring, RingFormatError, parse
from controller.core import loads, ringfile
from controller.core.acks import Ack
from controller.core.rfc3339 import now_rfc3339
from controller.core.views import RING_LABEL

log = logging.getLogger("shardring.agent")
RETRY_MIN, RETRY_MAX = 1.0, 30.0
# How often the agent reads its acknowledgement Lease back: one deleted (by hand, a clean-up
# job) or overwritten is written again within this, not only with the next version. A read,
# not a write: a thousand agents cost the API server 17 reads a second.
LEASE_CHECK_EVERY = 60.0
STOP_LATENCY = 1.0


@dataclass(frozen=True)
class AgentConfig:
    namespace: str
    configmap: str
    directory: Path
    member: str | None = None  # this member's identity in the ring, or find it by endpoint:
    address: str | None = None
    port: int | None = None
    lease: str | None = None  # the acknowledgement Lease's name; None: no acknowledgement
    prometheus: PrometheusOutput | None = None
    reload: Reload | None = None
    # Measures the load of the ring's shards (given K); None: no load report (controller.agent.
    # loadreport has the sources). Measured every load_interval seconds.
    load: Callable[[int], Measurement] | None = None
    load_interval: float = 30.0


@dataclass
class Applied:
    """What this agent last made current."""

    version: int = 0
    ring_hash: str = ""
    member: str = ""
    owner: Mapping[str, Any] | None = None
    ring: str = ""
    reload: str = "none"
    at: str = ""
    load: str = ""  # the load report last acknowledged with it
    load_at: str = ""


@dataclass
class Retry:
    failures: int = 0
    due: float | None = None

    def failed(self, now: float) -> float:
        self.failures += 1
        # The exponent is capped: a float overflows after a thousand failures (days of them).
        delay = min(RETRY_MAX, RETRY_MIN * 2.0 ** min(self.failures - 1, 16))
        self.due = now + delay
        return delay

    def done(self) -> None:
        self.failures, self.due = 0, None


class Measured:
    """Wakes the loop: a load measurement finished off the loop (``Agent.measurement``)."""


def in_thread(job: Callable[[], None]) -> None:
    threading.Thread(target=job, name="load-measure", daemon=True).start()


@dataclass
class Agent:
    config: AgentConfig
    leases: LeaseWriter | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    targets: Callable[[str], dict[str, Any] | None] = prometheus_targets
    applied: Applied = field(default_factory=Applied)
    updates: queue.Queue[tuple[float, Update | Measured]] = field(default_factory=queue.Queue)
    # Where a load measurement runs: off the loop, so that a slow load source (up to its 5 s
    # timeout) never holds a new ring version back.
    off_loop: Callable[[Callable[[], None]], None] = in_thread
    reachable: bool | None = None
    reload_pending: bool = False
    ack_pending: bool = False
    reloading: Retry = field(default_factory=Retry)
    acking: Retry = field(default_factory=Retry)
    # A version the agent could not swap in or render (a base promtool refuses, a full disk):
    # tried again with backoff, so that fixing the base is enough (with each new version, too).
    unapplied: tuple[Mapping[str, str], tuple[Any, str] | None, float] | None = None
    applying: Retry = field(default_factory=Retry)
    ring: Ring | None = None  # the version applied last, and this member in it
    member: str | None = None
    load_due: float | None = None
    load_failing: bool = False
    load_written: float | None = None  # when the report last went into the Lease (clock())
    lease_check_due: float | None = None  # when to read the Lease back (after an ack)
    measuring: bool = False  # a measurement runs off the loop
    # What it found, for the ring's K: loads, or the error (set off the loop, taken on it).
    measurement: tuple[int, Measurement | Exception] | None = None

    def __post_init__(self) -> None:
        self.files = AtomicDir(self.config.directory)
        self._first_reload = self.config.reload is not None
        self.prometheus = PrometheusRenderer(
            self.config.prometheus, targets=self.targets, clock=self.clock, sleep=self.sleep) \
            if self.config.prometheus is not None else None

    # ---- the loop ---------------------------------------------------------------------------

    def deliver(self, update: Update | Measured) -> None:
        self.updates.put((self.clock(), update))

    def run(self, stop: threading.Event, core: k8s.CoreV1Api) -> None:
        feed = ConfigMapFeed(core, self.config.namespace, self.config.configmap, self.deliver)
        threading.Thread(target=feed.run, args=(stop,), name="configmap-feed",
                         daemon=True).start()
        self.start()
        while not stop.is_set():
            # (A second at most: SIGTERM only sets ``stop``, and a wait is not cut short by it.)
            self.step(min(self._next_due(), STOP_LATENCY))

    def start(self) -> None:
        """Before the API answers: the files on disk are what the workload has; render and reload
        from them if the Prometheus configuration is missing."""
        config = self.config
        log.info("following ConfigMap %s/%s into %s; %s", config.namespace, config.configmap,
                 config.directory, f"acknowledging in Lease {config.namespace}/{config.lease}"
                 if config.lease else "no acknowledgement")
        stored = self.files.read()
        if stored is None or "ring.json" not in stored:
            if self.prometheus is not None:
                try:
                    self.prometheus.keep_nothing()
                except (OSError, ValueError) as error:  # (a base that cannot be read or used)
                    # Said as a version's refusal is: the agent goes on following the ring,
                    # and each version is rendered from the base again.
                    log.error("no Prometheus configuration rendered yet: %s", error)
            return
        try:
            ring = parse(stored["ring.json"])
        except RingFormatError:
            return
        self.applied.version, self.applied.ring_hash = ring.version, ring.hash
        metrics.APPLIED_VERSION.set(ring.version)
        prometheus = self.config.prometheus
        if prometheus is not None and not prometheus.output.exists():
            self._apply(stored, None, self.clock())

    def step(self, timeout: float | None) -> None:
        """Wait for the next update (or a retry falling due) and handle it."""
        try:
            taken = [self.updates.get(timeout=timeout)]
        except queue.Empty:
            self._retry()
            return
        while True:
            try:
                taken.append(self.updates.get_nowait())
            except queue.Empty:
                break
        # Only the newest word from the API matters (a finished measurement only wakes us).
        news = [(at, update) for at, update in taken if not isinstance(update, Measured)]
        if news:
            self._handle(*news[-1])
        self._retry()

    def _next_due(self) -> float:
        # (The read-back waits while an acknowledgement is pending: that write comes first.)
        lease_check = None if self.ack_pending else self.lease_check_due
        due = [d for d in (self.reloading.due, self.acking.due, self.applying.due,
                           self.load_due, lease_check) if d is not None]
        return max(0.0, min(due) - self.clock()) if due else 1.0

    def _handle(self, received: float, update: Update) -> None:
        if isinstance(update, Unreachable):
            if self.reachable is not False:  # once: the feed retries quietly until it answers
                serving = f"serving ring version {self.applied.version} from " \
                          f"{self.config.directory}" if self.applied.version else \
                    "no ring yet (no files were ever written here)"
                log.warning("the Kubernetes API is unreachable (%s); %s; retrying quietly",
                            update.message, serving)
            self.reachable = False
            metrics.API_REACHABLE.set(0)
            return
        if self.reachable is False:
            log.info("the Kubernetes API is reachable again")
        self.reachable = True
        metrics.API_REACHABLE.set(1)
        if isinstance(update, Seen):
            self._seen(update.body, received)

    def _seen(self, body: dict[str, Any] | None, received: float) -> None:
        if body is None:
            log.warning("ConfigMap %s/%s does not exist; keeping ring version %d",
                        self.config.namespace, self.config.configmap, self.applied.version)
            self.unapplied = None  # (a version of a ring gone: never to be applied)
            self.applying.done()
            return
        data = body.get("data") or {}
        metadata = body.get("metadata") or {}
        owner = next((o for o in metadata.get("ownerReferences") or [] if o.get("controller")),
                     None)
        ring = (metadata.get("labels") or {}).get(RING_LABEL, "")
        self._apply(data, (owner, ring), received)

    # ---- applying a version ------------------------------------------------------------------

    def _apply(self, data: Mapping[str, str], origin: tuple[Any, str] | None,
               received: float) -> None:
        text = data.get("ring.json")
        owner = (origin[0] or {}) if origin is not None else {}
        try:
            if text is None:
                raise RingFormatError("the ConfigMap holds no ring.json")
            ring = parse(text)
            if ringfile.hash_refuted(ring):
                raise RingFormatError("its ringHash is not its assignment's (was the assignment "
                                      "edited by hand?)")
            if owner.get("kind") == "ShardRing" and ring.name and \
                    (ring.name, ring.namespace) != (owner.get("name"), self.config.namespace):
                raise RingFormatError(f"it is ShardRing {ring.namespace}/{ring.name}'s, not "
                                      f"{self.config.namespace}/{owner.get('name')}'s, which "
                                      f"owns this ConfigMap")
        except RingFormatError as error:
            metrics.REJECTED.inc()
            log.error("ring.json not applied (%s); keeping ring version %d",
                      str(error)[:300], self.applied.version)
            return
        owner_uid = owner.get("uid")
        if ring.version < self.applied.version and owner_uid == self._owner_uid():
            return  # an older version of the same ring arriving late: never go back
        member = self._member(ring)
        try:
            files_changed = self.files.write(data)
            config_changed = self.prometheus.render(ring, member) \
                if self.prometheus is not None else False
        except (OSError, ValueError) as error:
            self._not_applied(ring.version, error, (data, origin, received))
            return
        if self.unapplied is not None:
            log.info("ring version %d applied after %d failed attempt(s)", ring.version,
                     self.applying.failures)
            self.unapplied = None
            self.applying.done()
        if files_changed:
            log.info("ring version %d swapped into %s (%s)", ring.version,
                     self.config.directory, shares(ring, member))
        self.ring, self.member = ring, member
        if self.config.load is not None and self.load_due is None:
            self.load_due = self.clock()
        applied = self.applied
        new_ack = (applied.version, applied.ring_hash, applied.member) != \
            (ring.version, ring.hash, member or "")
        applied.version, applied.ring_hash, applied.member = ring.version, ring.hash, \
            member or ""
        changed = config_changed if self.config.prometheus else files_changed
        if self.config.reload is not None and (changed or self._first_reload):
            self._first_reload = False
            self.reload_pending = True
            self.reloading.done()
            self._reload()
        metrics.APPLIED_VERSION.set(ring.version)
        metrics.APPLY_SECONDS.observe(self.clock() - received)
        applied.at = now_rfc3339(micro=True)
        if origin is not None:
            owner, ring_name = origin
            new_ack = new_ack or (owner, ring_name) != (applied.owner, applied.ring)
            applied.owner, applied.ring = owner, ring_name
            if new_ack:  # acknowledged at once (the retry timer is for failures)
                self.ack_pending = True
                self.acking.done()

    def _not_applied(self, version: int, error: Exception,
                     attempt: tuple[Mapping[str, str], tuple[Any, str] | None, float]) -> None:
        """Said once per ConfigMap content; tried again with backoff until it applies or another
        comes."""
        again = self.unapplied is not None and self.unapplied[0] == attempt[0]
        if not again:  # (another version: its own first try, its own count)
            self.applying.done()
        self.unapplied = attempt
        delay = self.applying.failed(self.clock())
        if not again:
            metrics.REJECTED.inc()
            log.error("ring version %d not applied: %s; trying again in %.0f s, then with "
                      "backoff", version, error, delay)

    def _owner_uid(self) -> str | None:
        return (self.applied.owner or {}).get("uid")

    def _member(self, ring: Ring) -> str | None:
        if self.config.member:
            everyone = {*ring.members, *ring.draining}
            return self.config.member if self.config.member in everyone else None
        if self.config.address:
            return ring.member_at(self.config.address, self.config.port)
        return None

    # ---- reload and acknowledgement, retried ---------------------------------------------------

    def _reload(self) -> None:
        action = self.config.reload
        assert action is not None
        known = self.prometheus.discovered() if self.prometheus is not None else 0
        metrics.RELOADS.inc()
        try:
            answer = action()
        except ReloadFailed as error:
            metrics.RELOAD_FAILURES.inc()
            metrics.RELOAD_PENDING.set(1)
            delay = self.reloading.failed(self.clock())
            log.warning("reload for ring version %d failed: %s; retrying in %.0f s",
                        self.applied.version, error, delay)
            if self.applied.reload != "failed":
                self.applied.reload = "failed"
                self.ack_pending = True
            return
        log.info("reload for ring version %d: %s%s", self.applied.version, answer,
                 f" (after {self.reloading.failures} failures)" if self.reloading.failures
                 else "")
        verified = self.prometheus.await_applied(expect_targets=known > 0) \
            if self.prometheus is not None else True
        self.reloading.done()
        self.reload_pending = False
        metrics.RELOAD_PENDING.set(0)
        state = "ok" if verified else "unverified"
        if self.applied.reload != state:
            self.applied.reload = state
            self.ack_pending = True

    def _ack(self) -> None:
        applied = self.applied
        if self.leases is None or self.config.lease is None or not applied.ring:
            self.ack_pending = False
            return
        ack = Ack(lease=self.config.lease, ring=applied.ring, member=applied.member,
                  version=applied.version, ring_hash=applied.ring_hash, reload=applied.reload,
                  applied_at=applied.at, load=applied.load, load_at=applied.load_at)
        try:
            self.leases.write(ack, applied.owner)
        except Exception as error:  # noqa: BLE001 - refused or unreachable: retry later
            self.acking.failed(self.clock())
            if self.acking.failures == 1:  # once: the retries are quiet until one succeeds
                log.warning("could not acknowledge ring version %d in Lease %s (%s); retrying "
                            "with backoff", applied.version, self.config.lease, _short(error))
            return
        if self.acking.failures:
            log.info("acknowledged ring version %d in Lease %s after %d failures",
                     applied.version, self.config.lease, self.acking.failures)
        self.acking.done()
        self.ack_pending = False
        self.lease_check_due = self.clock() + LEASE_CHECK_EVERY

    def _check_lease(self) -> None:
        """Read the Lease back: written again if it is no longer as this agent left it."""
        assert self.leases is not None and self.config.lease is not None
        self.lease_check_due = self.clock() + LEASE_CHECK_EVERY
        try:
            intact = self.leases.intact(self.config.lease)
        except Exception:  # noqa: BLE001 - unreachable or refused: the feed says the former,
            return  # and a refusal shows at the next write; read again next time
        if not intact:
            log.info("Lease %s was deleted or changed by someone else; acknowledging ring "
                     "version %d in it again", self.config.lease, self.applied.version)
            self.ack_pending = True
            self._ack()

    def _retry(self) -> None:
        now = self.clock()
        if self.unapplied is not None and self.applying.due is not None and \
                now >= self.applying.due:
            self._apply(*self.unapplied)
        if self.reload_pending and self.reloading.due is not None and now >= self.reloading.due:
            self._reload()
        if self.load_due is not None and now >= self.load_due and not self.measuring:
            self.load_due = now + self.config.load_interval
            self._measure()
        if self.measurement is not None:
            self._report(*self.measurement)
        if self.ack_pending and (self.acking.due is None or now >= self.acking.due):
            self._ack()
        elif not self.ack_pending and self.lease_check_due is not None and \
                now >= self.lease_check_due:
            if self.reachable is False:  # (the feed finds out when it answers again)
                self.lease_check_due = now + LEASE_CHECK_EVERY
            else:
                self._check_lease()

    def _measure(self) -> None:
        """Measure this member's shards, off the loop (``_report`` takes the result)."""
        measure, ring, member = self.config.load, self.ring, self.member
        if measure is None or ring is None:
            return
        if not member:  # not in this version: it serves nothing, so it reports nothing
            if self.applied.load:
                self.applied.load, self.applied.load_at = "", now_rfc3339()
                self.ack_pending = True
            return
        shards = ring.shards

        def job() -> None:
            found: Measurement | Exception
            try:
                found = measure(shards)
            except Exception as error:  # noqa: BLE001 - a load source never stops the agent
                found = error
            self.measurement = (shards, found)
            self.deliver(Measured())
        self.measuring = True
        self.off_loop(job)

    def _report(self, shards: int, measured: Measurement | Exception) -> None:
        """If the measured report reads differently, acknowledge it."""
        self.measurement, self.measuring = None, False
        if isinstance(measured, Exception):
            if not self.load_failing:  # once: quiet until it answers again
                log.warning("load not measured (%s); the last report stands",
                            measured if isinstance(measured, LoadUnavailable)
                            else repr(measured)[:200])
            self.load_failing = True
            return
        if self.load_failing:
            log.info("load measured again")
        self.load_failing = False
        ring, member = self.ring, self.member
        if ring is None or not member or ring.shards != shards:
            return  # measured for a ring no longer applied: the next one counts
        report = loads.encode({shard: measured.loads.get(shard, 0.0)
                               for shard in ring.shards_of(member)
                               if shard not in measured.unsettled})
        now = self.clock()
        # A steady load is written again before the operator would take it for stale.
        if report != self.applied.load or self.load_written is None or \
                now - self.load_written >= loads.STALE_AFTER / 2:
            self.applied.load, self.applied.load_at = report, now_rfc3339()
            self.load_written = now
            self.ack_pending = True


def _short(error: Exception) -> str:
    if isinstance(error, k8s.ApiException):
        return f"HTTP {error.status} {error.reason}"
    return type(error).__name__
