"""One worker per ShardRing: wakes on whatever may change the ring, gathers a pass's inputs, asks
the planner what to do, and has the publisher do it.

Wake-ups come from the ring's own events, its ConfigMap's events and its membership watch. A pass
whose inputs did not change since the last one is skipped (our own status patches echo back as
events). Everything the worker talks to is a parameter (Kubernetes adapter, source registry,
clock), so fast tests run it against fakes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any, Protocol

from controller import metrics
from controller.core.acks import Ack
from controller.core.credentials import Credentials, Token, UserPassword
from controller.core.limits import Access, Limits
from controller.core.memory import RingMemory, Verified
from controller.core.planner import Gathered, PassPlan, prepare
from controller.core.printable import has_control_characters
from controller.core.source_state import SourceState
from controller.core.spec import RingConfig, SpecError
from controller.core.views import (
    ConfigMapView,
    Conflict,
    NamespaceTerminating,
    RingGone,
    RingObject,
    SecretMissing,
)
from controller.kube.apihealth import ApiUnreachable
from controller.operator.clock import Clock, SystemClock, Timer
from controller.operator.inputs import Inputs, SeenConfigMap, plain_body
from controller.operator.planning import plan_off_loop
from controller.operator.publish import KubeAdapter, Publisher, safe_text
from controller.operator.slots import PassSlots
from controller.sources.base import SourceRegistry, Subscription
from controller.sources.specs import read_spec

log = logging.getLogger("shardring")
RETRY_MIN, RETRY_MAX = 1.0, 60.0
ACK_COALESCE = 0.25
# How long a status waits for the passes waiting for a slot before it takes its turn with them.
STATUS_PATIENCE = 5.0
# How long an event from before our last status write is expected (the watch is usually well
# under a second behind): past that, events are taken as they are, whatever they carry.
ECHO_PATIENCE = 10.0
MESSAGE_MAX = 400  # characters of the API server's refusal in the log


def _retry_after(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` in a row: doubling from RETRY_MIN up to
    RETRY_MAX (the exponent capped: a float overflows after a thousand)."""
    return min(RETRY_MAX, RETRY_MIN * 2.0 ** min(attempts - 1, 16))


def forbidden_text(error: Exception) -> str:
    """The API server's own words for a 403 (its Status' message: who may not do what, where;
    no credential), one line, bounded."""
    try:
        message = str(json.loads(getattr(error, "body", None) or "{}").get("message") or "")
    except (ValueError, AttributeError):
        message = ""
    return " ".join(message.split())[:MESSAGE_MAX] or "no reason given"


class Stopped(Protocol):
    """What kopf's DaemonStopped offers: true once the worker must stop."""

    def __bool__(self) -> bool: ...

    def wait(self) -> Awaitable[Any]: ...


@dataclass(frozen=True)
class HeldStatus:
    """A pass's status, held while other rings' passes wait for a slot (slots.py)."""

    plan: PassPlan
    body: dict[str, Any]
    since: float  # when the first status still unwritten was held (monotonic)


class RingLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['ring'] if self.extra else ''}] {msg}", kwargs


class RingWorker:
    def __init__(self, namespace: str, name: str, *, kube: KubeAdapter, sources: SourceRegistry,
                 connections: Mapping[tuple[str, str], Access], limits: Limits = Limits(),
                 clock: Clock | None = None, passes: PassSlots | None = None,
                 background: set[asyncio.Task[None]] | None = None,
                 planning: Executor | None = None, acks: Mapping[str, Ack] | None = None,
                 uid: str = "", listed: Callable[[str, str], bool] | None = None,
                 worked: Callable[[], None] | None = None):
        self.namespace, self.name = namespace, name
        self.uid = uid  # which ShardRing of this name it serves (a re-created one is another)
        self.kube, self.sources, self.connections = kube, sources, connections
        self.limits = limits
        self.clock: Clock = clock or SystemClock()
        self.log = RingLog(log, {"ring": f"{namespace}/{name}"})
        self.publisher = Publisher(kube, namespace, name, self.log,
                                   background if background is not None else set(),
                                   after_post=worked)
        self._slots = passes or PassSlots(1)
        self._held: HeldStatus | None = None
        # Told after each pass and each Event posted (the operator's memory trimmer).
        self._worked = worked
        self._planning = planning
        self.body: dict[str, Any] | None = None
        # The resourceVersion our last status write gave the ring (and until when, monotonic),
        # until an event shows that write: events from before it can still arrive (the watch is
        # behind our own writes), and a pass planned on their status would undo what the write
        # recorded (lastHandover, lastChange). Nobody else writes the status while this worker
        # serves, so until then it is the one we wrote.
        self._echo_awaited: tuple[str, float] | None = None
        self._unwatched = False  # no event may come for this ring: read it before anything
        self._unwatched_reads = 0  # reads that found it still there
        self._spec: tuple[tuple[str, int], RingConfig | SpecError] | None = None  # as last read
        self.subscription: Subscription | None = None
        self.seen: SeenConfigMap | None = None  # None: not read yet
        # Whether the operator's own listing of its ConfigMaps (complete before any ring is
        # served) has one of that name: a ring whose ConfigMap is not there yet (a new ring, or
        # every ring at a first start) is not read only to find that out. Asked only once: after
        # that, its events and our writes keep ``seen``; a name taken by a ConfigMap that is not
        # ours shows up as the create's 409, and is read.
        self._listed = listed
        # What the passes remember (published ring, stabilization, handover, last publish),
        # given to the planner whole and taken back whole.
        self.memory = RingMemory()
        self.fingerprint: Inputs | None = None  # what the last completed pass started from
        self.deadline: float | None = None
        self.namespace_terminating = False
        self.token_events = 0  # changes seen to the token Secret
        # The ring agents' acknowledgements, by Lease name: kept up to date by the Lease events
        # (the operator's store, so the ones listed before this worker existed are here too).
        self.acks: Mapping[str, Ack] = acks if acks is not None else {}
        self.ack_events = 0
        self._ack_wake: Timer | None = None
        self.passes = 0  # wake-ups handled: a bad spec must not make this climb (no hot loop)
        self.failures = self.conflicts = 0
        self._forbidden = False  # the last failure was a 403: said once, and when it ends
        self._wake = asyncio.Event()
        self._stopped: Stopped | bool = False  # serve()'s: a held status is not written after
        self.retired = False  # the ring is gone: serve() returns
        # serve() is running: a replica that peering paused keeps its workers but reports none
        # of them (metrics, ring page): the active replica's word is the current one.
        self.serving = False

    @property
    def writes(self) -> int:
        return self.publisher.writes

    # ---- what wakes it --------------------------------------------------------------------------

    def observe(self, body: Mapping[str, Any]) -> None:
        self._unwatched = False  # (watched again)
        if self._older(body):
            return
        self.body = self._after_our_write(body)
        self.wake()

    def _older(self, body: Mapping[str, Any]) -> bool:
        """Whether ``body`` is of an older generation than the one the worker has (an event
        still on its way after a re-read moved the worker ahead of the watch): its spec would
        publish the ring of a spec already replaced."""
        if self.body is None:
            return False
        have, new = self.body.get("metadata") or {}, body.get("metadata") or {}
        generation, current = new.get("generation"), have.get("generation")
        return have.get("uid") == new.get("uid") and isinstance(generation, int) and \
            isinstance(current, int) and generation < current

    def _after_our_write(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``body`` as the worker keeps it: with the status it last wrote, if the body is from
        before that write (or that write's own event)."""
        written = self.publisher.written_status
        if self._echo_awaited is not None and written is not None:
            version, until = self._echo_awaited
            if self.clock.monotonic() > until:
                self._echo_awaited = None
            else:
                if body.get("status") == written or \
                        (body.get("metadata") or {}).get("resourceVersion") == version:
                    self._echo_awaited = None
                body = {**body, "status": written}
        return plain_body(body, written)

    def configmap_seen(self, name: str, view: ConfigMapView | None) -> None:
        self.seen = SeenConfigMap(name, self._without_our_text(view))
        self.wake()

    def _without_our_text(self, view: ConfigMapView | None) -> ConfigMapView | None:
        """Our own write coming back: its text is not kept (the ring is, parsed)."""
        if view is not None and view.ring_json is not None and self.memory.holds(view):
            return replace(view, ring_json=None)
        return view

    def wake(self) -> None:
        self._wake.set()

    def unwatched(self) -> None:
        """kopf no longer watches the ring (``Operator.unwatched``): the next wake reads it, and
        retires the worker if it is gone."""
        if not self._unwatched:
            self._unwatched, self._unwatched_reads = True, 0
        self.wake()

    def retire(self) -> None:
        """The ring was deleted: finish the pass in flight, unsubscribe and return from serve()."""
        self.retired = True
        self.wake()

    @property
    def credentials_secret(self) -> str | None:
        """The Secret the ring's spec names for its source credentials, as last read."""
        config = self._spec[1] if self._spec else None
        ref = (config.token or config.credentials) if isinstance(config, RingConfig) else None
        return ref.secret if ref else None

    def token_changed(self) -> None:
        """The credentials Secret changed (a rotated token or password): an input of the next
        pass."""
        self.token_events += 1
        self.wake()

    def acks_changed(self) -> None:
        """An agent acknowledged a ring version (or its Lease went): convergence may differ.
        Every member acknowledges each version within moments of the others, so their Leases
        are taken together, one pass (one status write) per ACK_COALESCE seconds."""
        if self._ack_wake is None:
            self._ack_wake = self.clock.call_later(ACK_COALESCE, self._acks_due)

    def _acks_due(self) -> None:
        self._ack_wake = None
        self.ack_events += 1
        self.wake()

    async def serve(self, stopped: Stopped) -> None:
        """Run passes whenever woken, until told to stop (deletion, exit, or pausing)."""
        async def wake_on_stop() -> None:
            await stopped.wait()
            self.wake()
        stopper = asyncio.create_task(wake_on_stop())
        self.serving = True
        self._stopped = stopped
        try:
            while not stopped and not self.retired:
                self._wake.clear()
                timeout = await self.step()
                if self._held is not None:
                    written, timeout = await self._write_held(timeout)
                    if not written:
                        continue  # woken, or the next pass is due: it plans the status again
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass
        finally:
            # A held status is not written now. And paused, another replica may write the
            # status: when this one serves again, the events it saw meanwhile (kopf delivers
            # them before it starts the daemon again) are taken as they are, and it plans once
            # and compares its status with theirs, not with what it wrote itself.
            self._held, self.fingerprint = None, None
            self._echo_awaited, self.publisher.written_status = None, None
            self.serving = False
            stopper.cancel()
            try:
                await self.unsubscribe()
            except Exception as error:  # noqa: BLE001 - a worker's end never fails: kopf would
                # start the daemon again, for a ring that may be gone, and it would publish
                self.log.warning("its membership subscription did not end cleanly: %s",
                                 safe_text(error))

    # ---- one wake-up ----------------------------------------------------------------------------

    async def step(self) -> float | None:
        """Handle one wake-up; returns seconds until the next one is due (None: when woken)."""
        self.passes += 1
        if not self._serving():
            self._held = None
            return None
        return await self._guarded(self._pass_if_needed)

    async def _guarded(self, action: Callable[[], Awaitable[float | None]]) -> float | None:
        """A pass (or a held status's write), its failures handled: returns seconds until the
        next wake is due (None: when woken)."""
        try:
            timeout = await action()
        except RingGone:
            self._gone()
            return None
        except NamespaceTerminating:
            # The ring goes with its namespace: say so once, and stop writing.
            self.namespace_terminating = True
            self.log.info("namespace %s is being deleted; the ring is no longer published",
                          self.namespace)
            return None
        except Conflict:
            try:
                return await self._after_conflict()
            except RingGone:
                self._gone()
                return None
            except Exception as error:  # noqa: BLE001 - the re-read failed: back off as below
                return self._failed(error)
        except Exception as error:  # noqa: BLE001 - one ring's failure never stops the others
            return self._failed(error)
        if self._forbidden:
            self._forbidden = False
            self.log.info("the API server takes this operator's writes here again")
        self.failures = self.conflicts = 0
        return timeout

    def _gone(self) -> None:
        if not self.retired:  # (else its deletion was said: Operator.forget)
            self.log.info("the ShardRing is gone; its worker stops")
        self.retire()

    def _failed(self, error: Exception) -> float:
        self.failures += 1
        timeout = _retry_after(self.failures)
        if isinstance(error, ApiUnreachable):
            # An outage: said once for the whole operator (apihealth), not once per ring.
            self.log.debug("reconcile waits for the API (retry in %.0f s)", timeout)
            return timeout
        if getattr(error, "status", None) == 403:
            # Its rights taken away here (the namespace's RoleBinding deleted, say): said once,
            # without a traceback, then retried quietly until they come back.
            if not self._forbidden:
                self._forbidden = True
                self.log.warning(
                    "the API server refuses this operator a request in namespace %s (HTTP 403 "
                    "Forbidden: %s): its rights there (the RoleBinding to the ClusterRole "
                    "shardring-operator-namespace, or as installed) may be gone; retrying "
                    "quietly, up to every %.0f s", self.namespace, forbidden_text(error),
                    RETRY_MAX)
            metrics.RECONCILE_ERRORS.labels(self.namespace, self.name).inc()
            return timeout
        metrics.RECONCILE_ERRORS.labels(self.namespace, self.name).inc()
        self.log.error("reconcile failed (retry in %.0f s): %s", timeout, safe_text(error),
                       exc_info=self.failures == 1)
        return timeout

    def _serving(self) -> bool:
        """A ring being deleted (alone or with its namespace) is not reconciled any more: its
        ConfigMap is garbage-collected with it, and recreating it would only fail or leak."""
        return self.body is not None and not self.namespace_terminating and \
            not self.body.get("metadata", {}).get("deletionTimestamp")

    async def _after_conflict(self) -> float | None:
        """The one conflict policy: someone wrote first, so forget what we saw of the ring and its
        ConfigMap, read the ring again and run the pass again (at once the first time)."""
        self.conflicts += 1
        self.seen, self.fingerprint = None, None
        self.body = plain_body(await self._own_ring())
        return 0.0 if self.conflicts == 1 else min(RETRY_MAX, 2.0 ** (self.conflicts - 2))

    def _inputs(self) -> Inputs:
        metadata = (self.body or {}).get("metadata", {})
        watch = self.subscription.watch if self.subscription else None
        seen = self.seen and (self.seen.name, self.seen.view and self.seen.view.resource_version)
        return Inputs(metadata.get("uid"), metadata.get("generation"),
                      repr((self.body or {}).get("spec")), watch.key if watch else None,
                      watch.version if watch else None, self.token_events, self.ack_events,
                      repr(seen))

    @property
    def settled(self) -> bool:
        """A completed pass started from the ring and the membership as they are now: it has
        decided what the ring should be. (Not the ConfigMap: the pass itself may have read or
        written it since, which runs one more, confirming pass on the next wake.)"""
        return self.fingerprint is not None and \
            self.fingerprint._replace(configmap="") == self._inputs()._replace(configmap="")

    async def _pass_if_needed(self) -> float | None:
        if self._unwatched:
            async with self._slots.passing():  # (a thousand rings: not a thousand reads at once)
                if self.retired or self._stopped:
                    return None
                await self._own_ring()  # RingGone if it went with its CRD
            # Still there: a CRD being deleted takes its rings a moment later (or the ring's
            # namespace is no longer served). Nothing is published meanwhile; read again, less
            # and less often, until it is gone or an event shows it watched again.
            self._unwatched_reads += 1
            return _retry_after(self._unwatched_reads)
        now = self.clock.monotonic()
        due = self.deadline is not None and now >= self.deadline
        if not due and self.fingerprint is not None and self.fingerprint == self._inputs():
            return None if self.deadline is None else self.deadline - now
        async with self._slots.passing():
            if self.retired or self._stopped:  # while it waited for the slot: nothing to do
                self.fingerprint = None
                return None
            # The inputs as they were when this pass started: anything that changes while it
            # runs (a source reply, our own ConfigMap write) makes the next wake run a pass.
            inputs = self._inputs()
            self.fingerprint = None
            timeout = await self.run_pass()
        if self._worked is not None:
            self._worked()
        self.deadline = None if timeout is None else self.clock.monotonic() + timeout
        self.fingerprint = inputs
        return timeout

    # ---- one pass -------------------------------------------------------------------------------

    async def run_pass(self) -> float | None:
        """Gather, plan, carry out. Returns seconds until it must run again (None: when woken)."""
        body = self.body or {}
        ring = RingObject.from_body(body)
        intent = prepare(ring, self.connections, self.clock.wall(), self._read_spec)
        if intent.plan is not None:
            await self.unsubscribe()
            await self._carry_out(intent.plan, None, None, body)
            return self._due(intent.plan)
        config = intent.config
        assert config is not None
        gathered = await self._gather(config)
        if gathered is None:
            return None  # the source's first reply wakes us
        plan = await plan_off_loop(ring, config, gathered, self.clock.monotonic(),
                                   self.clock.wall(), self.limits, self._planning)
        await self._carry_out(plan, gathered.configmap, gathered.source, body)
        return self._due(plan)

    def _due(self, plan: PassPlan) -> float | None:
        """Seconds until the next pass: the plan's, or sooner for a status held back."""
        due = self.publisher.observed_due
        if due is None:
            return plan.requeue_after
        due = max(0.0, due - self.clock.monotonic())
        return due if plan.requeue_after is None else min(plan.requeue_after, due)

    def _read_spec(self, ring: RingObject) -> RingConfig:
        """The ring's spec as a config, read once per generation (its SpecError too): the spec
        changes only with the generation."""
        key = (ring.uid, ring.generation)
        if self._spec is None or self._spec[0] != key:
            try:
                self._spec = (key, read_spec(ring))
            except SpecError as error:
                self._spec = (key, error)
        config = self._spec[1]
        if isinstance(config, SpecError):
            raise SpecError(str(config))
        return config

    async def _gather(self, config: RingConfig) -> Gathered | None:
        try:
            credentials = await self._secret(config)
        except SecretMissing as error:
            await self.unsubscribe()
            return Gathered(None, token_problem=str(error))
        self._subscribe(config, credentials)
        assert self.subscription is not None
        source = self.subscription.watch.state
        if source.silent:
            return None
        return Gathered(await self._configmap(config.configmap), source, memory=self.memory,
                        acks=tuple(self.acks[name] for name in sorted(self.acks)))

    async def _secret(self, config: RingConfig) -> Credentials | None:
        """A token (Consul's), or a username and password (etcd's, ZooKeeper's), from the
        ring's marked Secret."""
        read = self.kube.read_secret_key
        if config.token:
            token = await read(self.namespace, config.token.secret, config.token.key)
            if has_control_characters(token):
                # (An HTTP header cannot carry it: every query failed with a bare ValueError, said
                # as an outage. Never quoted: it is a credential.)
                raise SecretMissing(
                    f"the key {config.token.key!r} of Secret {config.token.secret!r} holds a "
                    f"line break or another control character inside the token: a Consul token "
                    f"is one line")
            return Token(token)
        if config.credentials:
            ref = config.credentials
            return UserPassword(await read(self.namespace, ref.secret, ref.username_key),
                                await read(self.namespace, ref.secret, ref.password_key))
        return None

    async def _configmap(self, name: str) -> ConfigMapView | None:
        if self.seen is None or self.seen.name != name:
            listed, self._listed = self._listed, None
            if listed is not None and not listed(self.namespace, name):
                self.seen = SeenConfigMap(name, None)
            else:
                self.seen = SeenConfigMap(name, await self.kube.read_configmap(self.namespace,
                                                                               name))
        return self.seen.view

    async def _carry_out(self, plan: PassPlan, configmap: ConfigMapView | None,
                         source: SourceState | None, body: dict[str, Any]) -> None:
        if plan.configmap_unowned:
            self.seen = None  # not ours, so not watched: read it again next time
        memory = plan.memory  # taken only once the write went through (a conflict forgets it)
        if plan.configmap is not None and configmap is None and self.memory.verified is not None:
            await self._own_ring()  # (see _own_ring: gone with its ring, perhaps)
        if plan.configmap is not None:
            written = await self.publisher.configmap(plan.configmap, configmap)
            memory = (memory or self.memory).written(written.ring_digest, Verified(
                written.name, written.resource_version, plan.configmap.prometheus_relabel))
        if memory is not None:
            self.memory = memory
        if plan.configmap is not None:
            self.seen = SeenConfigMap(written.name, self._without_our_text(written))
        self.publisher.events(plan, body, warnings=False)
        now = self.clock.monotonic()
        self.publisher.measure(plan, source, now)
        held, self._held = self._held, None
        if self.publisher.status_due(plan.status, body, now, plan.requeue_after):
            if self._slots.contended:  # the rings waiting publish first; a newer pass replaces it
                # (Only what the status write needs: a thousand held plans' rendered ConfigMaps
                # and rings weighed tens of MB at a cold start.)
                slim = replace(plan, configmap=None, published=None, memory=None, change=None)
                self._held = HeldStatus(slim, body, held.since if held else now)
            else:
                await self._write_status(plan, body)

    async def _write_held(self, timeout: float | None) -> tuple[bool, float | None]:
        """Write the held status once no pass waits for a slot (or, once it has waited
        STATUS_PATIENCE, in its turn with them). Returns whether it was written (not when woken
        first, or when the next pass, due in ``timeout`` seconds, comes first), and the seconds
        until the next pass is due."""
        held = self._held
        assert held is not None
        started = self.clock.monotonic()
        patience = held.since + STATUS_PATIENCE - started
        if patience > 0:
            wait = patience if timeout is None else min(timeout, patience)
            if not await self._slots.for_status(self._wake, wait):
                return False, timeout
            try:
                failed = await self._held_status(held)
            finally:
                self._slots.release()
        else:
            async with self._slots.passing():
                failed = await self._held_status(held)
        if failed is not None:  # the pass runs again once the failure's backoff is over
            self.fingerprint = None
            return True, failed
        return True, None if timeout is None else \
            max(0.0, timeout - (self.clock.monotonic() - started))

    async def _own_ring(self) -> dict[str, Any]:
        """The ring as it is now; RingGone if it was deleted (perhaps re-created: another ring).
        Read after a conflict, and before putting back a ConfigMap this worker published that
        is gone: deleted by hand (it is put back), or collected with its ring, which may be gone
        without a deletion event ever coming (its CRD deleted: kopf stops watching rings, and a
        ConfigMap recreated for a ring that no longer exists is collected again, and again)."""
        ring = await self.kube.read_ring(self.namespace, self.name)
        if ring is None or (ring.get("metadata") or {}).get("uid") != self.uid != "":
            raise RingGone(self.name)
        return ring

    async def _held_status(self, held: HeldStatus) -> float | None:
        self._held = None
        if not self._serving() or self.retired or self._stopped:
            # Deleted, re-created, or paused while it waited: not ours to write (a worker that
            # serves again plans it again).
            self.fingerprint = None
            return None
        return await self._guarded(lambda: self._write_status(held.plan, held.body))

    async def _write_status(self, plan: PassPlan, body: dict[str, Any]) -> None:
        patched = await self.publisher.write_status(plan.status, body, self.clock.monotonic())
        version = (patched.get("metadata") or {}).get("resourceVersion")
        self._echo_awaited = (version, self.clock.monotonic() + ECHO_PATIENCE) \
            if version else None
        if self.body is body:
            self.body = plain_body({**body, "status": patched.get("status", plan.status),
                                    "metadata": patched.get("metadata", body.get("metadata"))},
                                   self.publisher.written_status)
        elif self.body is not None:  # a body that came meanwhile: its spec wins, not its status
            self.body = self._after_our_write(self.body)
        self.publisher.events(plan, body, warnings=True)

    # ---- the membership subscription ----------------------------------------------------------

    def _subscribe(self, config: RingConfig, credentials: Credentials | None) -> None:
        key = self.sources.key_for(config.query, credentials)
        if self.subscription and self.subscription.watch.key == key:
            return
        old = self.subscription
        self.subscription = self.sources.subscribe(config.query, credentials, self.wake)
        if old:
            task = asyncio.create_task(self.sources.unsubscribe(old))
            self.publisher.keep(task)

    async def unsubscribe(self) -> None:
        if self.subscription:
            subscription, self.subscription = self.subscription, None
            await self.sources.unsubscribe(subscription)


