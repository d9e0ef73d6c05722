"""The shell's fakes, shared by every shell test: the Kubernetes adapter (objects in memory with
resourceVersions, counted writes, injectable 409s), the source registry (a watch per query that
the test publishes to), a clock that steps, and ``setup`` — a ring worker wired to them."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.core import ringfile
from controller.core.limits import Access, Limits
from controller.core.source_state import Snapshot, SourceState
from controller.core.views import Conflict, SecretMissing, view_from_dict
from controller.operator.slots import PassSlots
from controller.operator.worker import RingWorker
from controller.sources.base import Subscription
from controller.testing.builders import instances

NAMESPACE, NAME, UID = "team", "scrapers", "uid-1"


def merged(current: Any, patch: Any) -> Any:
    """RFC 7386: what a JSON merge patch makes of ``current``."""
    if not isinstance(patch, dict):
        return patch
    result = dict(current) if isinstance(current, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merged(result.get(key), value)
    return result


class FakeTimer:
    def __init__(self, clock: FakeClock, due: float, callback: Callable[[], None]) -> None:
        self.clock, self.due, self.callback = clock, due, callback

    def cancel(self) -> None:
        if self in self.clock.timers:
            self.clock.timers.remove(self)


class FakeClock:
    """A stepping clock: time moves only when a test says so, and timers fire as it passes."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[FakeTimer] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> str:
        return f"t+{self.now:.0f}"

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self, self.now + delay, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for timer in sorted((t for t in self.timers if t.due <= self.now), key=lambda t: t.due):
            self.timers.remove(timer)
            timer.callback()


@dataclass
class FakeWatch:
    key: Hashable
    state: SourceState = field(default_factory=SourceState)
    version: int = 0
    subscribers: list[Callable[[], None]] = field(default_factory=list)


class FakeSources:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.watches: dict[Hashable, FakeWatch] = {}
        self.index = itertools.count(1)

    def key_for(self, query: Any, token: str | None) -> Hashable:
        return (query, token)

    def subscribe(self, query: Any, token: str | None, wake: Callable[[], None]) -> Subscription:
        watch = self.watches.setdefault(self.key_for(query, token),
                                        FakeWatch(self.key_for(query, token)))
        watch.subscribers.append(wake)
        return Subscription(watch, wake)

    async def unsubscribe(self, subscription: Subscription) -> None:
        watch = self.watches.get(subscription.watch.key)
        if watch is not None:
            watch.subscribers.remove(subscription.wake)
            if not watch.subscribers:
                del self.watches[watch.key]

    async def close(self) -> None:
        self.watches.clear()

    def active(self) -> int:
        return len(self.watches)

    def publish(self, state: SourceState) -> None:
        for watch in self.watches.values():
            watch.state, watch.version = state, watch.version + 1
            for wake in watch.subscribers:
                wake()

    def members(self, count: int) -> None:
        self.publish(SourceState(Snapshot(next(self.index), instances(count),
                                          self.clock.monotonic())))


class FakeKube:
    """Objects in memory with resourceVersions; writes are counted; 409s can be injected."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.rv = itertools.count(1)
        self.ring = {"metadata": {"namespace": NAMESPACE, "name": NAME, "uid": UID,
                                  "generation": 1, "resourceVersion": str(next(self.rv))},
                     "spec": spec, "status": {}}
        self.configmaps: dict[str, dict[str, Any]] = {}
        self.configmap_writes = self.status_writes = self.configmap_reads = 0
        self.events: list[tuple[str, str]] = []
        self.conflicts: list[str] = []  # "configmap" / "status": the next such write gets a 409
        self.secrets: dict[tuple[str, str], str] = {}
        self.during_write: Callable[[], None] | None = None

    async def read_configmap(self, namespace: str, name: str):
        self.configmap_reads += 1
        body = self.configmaps.get(name)
        return view_from_dict(body) if body else None

    async def write_configmap(self, namespace, name, data, labels, owner, resource_version):
        if self.during_write:
            self.during_write()
        current = self.configmaps.get(name)
        if "configmap" in self.conflicts or (current and current["metadata"][
                "resourceVersion"] != resource_version) or (current is None and resource_version):
            if "configmap" in self.conflicts:
                self.conflicts.remove("configmap")
            raise Conflict("configmap")
        self.configmap_writes += 1
        self.configmaps[name] = {"metadata": {"name": name, "labels": dict(labels),
                                              "ownerReferences": [dict(owner)],
                                              "resourceVersion": str(next(self.rv))},
                                 "data": dict(data)}
        return view_from_dict(self.configmaps[name])

    async def patch_status(self, namespace, name, status, resource_version):
        if "status" in self.conflicts or resource_version != self.ring["metadata"][
                "resourceVersion"]:
            if "status" in self.conflicts:
                self.conflicts.remove("status")
                self.ring["metadata"]["resourceVersion"] = str(next(self.rv))  # someone wrote
            raise Conflict("status")
        self.status_writes += 1
        self.ring["status"] = merged(self.ring["status"], status)  # as the API server does
        self.ring["metadata"]["resourceVersion"] = str(next(self.rv))
        return self.ring

    async def read_ring(self, namespace, name):
        return self.ring

    async def read_secret_key(self, namespace, name, key):
        if (name, key) not in self.secrets:
            raise SecretMissing(f"Secret {name!r} not found")
        return self.secrets[(name, key)]

    async def post_event(self, ring: Mapping[str, Any], kind, reason, message):
        self.events.append((kind, reason))

    # what tests look at
    def published(self) -> ringfile.RingFile:
        return ringfile.parse(self.configmaps[f"{NAME}-ring"]["data"]["ring.json"])

    def condition(self, kind: str) -> tuple[str, str]:
        found = next(c for c in self.ring["status"]["conditions"] if c["type"] == kind)
        return found["status"], found["reason"]

    def edit_spec(self, **changes: Any) -> None:
        self.ring["spec"] = {**self.ring["spec"], **changes}
        self.ring["metadata"]["generation"] += 1
        self.ring["metadata"]["resourceVersion"] = str(next(self.rv))


def spec(window: str = "0s", max_delay: str = "0s", **extra: Any) -> dict[str, Any]:
    """Moves complete at once here unless a test asks for a handover (test_handover.py)."""
    return {"service": {"name": "web"}, "shards": 16, "members": {"identity": "id"},
            "stabilization": {"window": window, "maxDelay": max_delay,
                              "maxMemberLossPercent": 100}, "handover": {"timeout": "0s"},
            **extra}


@dataclass
class Setup:
    kube: FakeKube
    sources: FakeSources
    clock: FakeClock
    worker: RingWorker
    plans: list[float] = field(default_factory=list)

    async def step(self) -> float | None:
        """One wake-up, as the worker's loop would run it, then let posted events land."""
        timeout = await self.worker.step()
        await asyncio.sleep(0)
        return timeout

    def observe(self) -> None:
        self.worker.observe(self.kube.ring)


def setup(ring_spec: dict[str, Any], limits: Limits = Limits(min_publish_interval=0),
          listed: Callable[[str, str], bool] | None = None,
          passes: PassSlots | None = None) -> Setup:
    clock = FakeClock()
    kube, sources = FakeKube(ring_spec), FakeSources(clock)
    worker = RingWorker(NAMESPACE, NAME, kube=kube, sources=sources,
                        connections={("consul", "default"): Access()}, limits=limits, clock=clock,
                        listed=listed, passes=passes)
    made = Setup(kube, sources, clock, worker)
    run_pass = worker.run_pass

    async def counted() -> float | None:
        made.plans.append(clock.now)
        return await run_pass()
    worker.run_pass = counted  # type: ignore[method-assign]
    made.observe()
    return made


class Running:
    """kopf's DaemonStopped for a worker's serve(): set ``stop`` to stop it."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()

    def __bool__(self) -> bool:
        return self.stop.is_set()

    async def wait(self) -> None:
        await self.stop.wait()


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds (about two seconds at most)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("never happened")
