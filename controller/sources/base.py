"""What every membership source shares: a watcher per distinct query, shared by every ring with
that query, each holding the latest ``SourceState`` (core.source_state), a version and its
subscribers; the pool that deduplicates them; the router that sends a query to its kind's
registry. Nothing above this interface knows which source a ring follows."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import aiohttp

from controller import metrics
from controller.core.credentials import Credentials
from controller.core.source_state import SourceState
from controller.core.spec import SourceQuery

log = logging.getLogger("shardring.sources")
Q = TypeVar("Q", bound=SourceQuery)


class Backoff:
    """How long a watcher waits after a failure: from ``start``, doubling up to ``cap``, each wait
    jittered by ±25 % so that watchers that failed together do not retry together. A success
    starts it again."""

    def __init__(self, start: float = 0.25, cap: float = 2.0):
        self.start, self.cap = start, cap
        self._next = start

    def reset(self) -> None:
        self._next = self.start

    def wait(self, cap: float | None = None) -> float:
        """The next wait; ``cap`` overrides the usual one (a failure only a spec change fixes)."""
        delay = self._next * random.uniform(0.75, 1.25)
        self._next = min(self.cap if cap is None else cap, self._next * 2)
        return delay


def narrowed(query: SourceQuery, kind: type[Q]) -> Q:
    """A query as its own registry's type: the router sends a registry only its kind's."""
    if not isinstance(query, kind):
        raise TypeError(f"not a {kind.kind} query: {query!r}")
    return query


def http_session(*, https: bool, ca_file: str | None, cert_file: str | None,
                 key_file: str | None, verify: bool = True) -> aiohttp.ClientSession:
    """An HTTP session for a source spoken to with aiohttp (etcd's gateway, the Kubernetes
    API): TLS with a CA and an optional client certificate; a big read buffer, since one watch
    event is one line of JSON."""
    context: ssl.SSLContext | bool = False
    if https:
        context = ssl.create_default_context(cafile=ca_file)
        if not verify:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        if cert_file:
            context.load_cert_chain(cert_file, key_file)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=0),
                                 read_bufsize=8 << 20)


def error_reason(*, denied: bool = False, refused: bool = False, over_limit: bool = False,
                 unreachable: bool = False) -> str:
    """The ``reason`` of shardring_source_errors_total, the same words for every source."""
    return "permission_denied" if denied else "refused" if refused else \
        "over_limit" if over_limit else "unreachable" if unreachable else "failed"


class Watch(Protocol):
    """One shared watcher, as its subscribers see it."""

    @property
    def key(self) -> Hashable: ...

    @property
    def state(self) -> SourceState: ...

    @property
    def version(self) -> int:
        """+1 on every state change (object ids can be reused; this cannot)."""
        ...


@dataclass(frozen=True)
class Subscription:
    watch: Watch
    wake: Callable[[], None]


class SourceRegistry(Protocol):
    def subscribe(self, query: SourceQuery, credentials: Credentials | None,
                  wake: Callable[[], None]) -> Subscription:
        """Share the watcher of an equal (query, credentials), starting one if needed; ``wake``
        is called on every change of its state."""
        ...

    def key_for(self, query: SourceQuery, credentials: Credentials | None) -> Hashable: ...

    async def unsubscribe(self, subscription: Subscription) -> None:
        """The watcher stops when its last subscriber leaves."""
        ...

    async def close(self) -> None: ...

    def active(self) -> int:
        """Watchers running (one per distinct query)."""
        ...


STOP_TIMEOUT = 5.0


async def stop_task(task: asyncio.Task[None], name: str) -> None:
    """Cancel a watcher's task and wait for it to end, but never for long: an unsubscribe, a
    token rotation or the operator's exit must not hang on one stuck connection."""
    task.cancel()
    await asyncio.wait([task], timeout=STOP_TIMEOUT)
    if not task.done():
        log.warning("%s did not stop within %.0f s of being cancelled; left behind", name,
                    STOP_TIMEOUT)
    elif not task.cancelled() and task.exception() is not None:
        log.debug("%s ended with %r", name, task.exception())


class SourceWatcher:
    """What every source's watcher shares: its state, version and subscribers, and the one task
    that runs ``_run`` (each source's own loop) until stopped."""

    def __init__(self, key: Hashable, query: SourceQuery, name: str):
        self.key = key
        self.query = query
        self.clock: Callable[[], float] = time.monotonic  # stamps snapshots (Snapshot.received)
        self.state = SourceState()
        self.version = 0  # +1 on every state change (object ids can be reused; this cannot)
        self.subscribers: set[Callable[[], None]] = set()
        self._name = name
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task:
            await stop_task(self._task, self._name)

    def _notify(self) -> None:
        self.version += 1
        for wake in list(self.subscribers):
            wake()


class WatcherPool:
    """One watcher per key, shared by every subscriber with that key. The source registries
    differ only in how they make a watcher and its key."""

    def __init__(self) -> None:
        self.watchers: dict[Hashable, SourceWatcher] = {}

    def active(self) -> int:
        return len(self.watchers)

    def join(self, key: Hashable, make: Callable[[], SourceWatcher],
             wake: Callable[[], None]) -> Subscription:
        """``make`` builds the watcher when none has this key yet."""
        watcher = self.watchers.get(key)
        if watcher is None:
            watcher = self.watchers[key] = make()
            watcher.start()
        watcher.subscribers.add(wake)
        return Subscription(watcher, wake)

    async def leave(self, subscription: Subscription) -> SourceWatcher | None:
        """Drop a subscription; returns the watcher if that stopped it (else None)."""
        watcher = self.watchers.get(subscription.watch.key)
        if watcher is None or watcher is not subscription.watch:
            return None  # another pool's, or already gone
        watcher.subscribers.discard(subscription.wake)
        if watcher.subscribers:
            return None
        del self.watchers[watcher.key]
        await watcher.stop()
        return watcher

    async def stop_all(self) -> None:
        for watcher in list(self.watchers.values()):
            await watcher.stop()
        self.watchers.clear()


@dataclass
class SourceRouter:
    """Every source kind's registry behind one: a query goes to the registry of its ``kind``."""

    registries: Mapping[str, SourceRegistry]

    def _of(self, query: SourceQuery) -> SourceRegistry:
        return self.registries[query.kind]

    def subscribe(self, query: SourceQuery, credentials: Credentials | None,
                  wake: Callable[[], None]) -> Subscription:
        return self._of(query).subscribe(query, credentials, wake)

    def key_for(self, query: SourceQuery, credentials: Credentials | None) -> Hashable:
        return self._of(query).key_for(query, credentials)  # each kind's keys are its own

    async def unsubscribe(self, subscription: Subscription) -> None:
        for registry in self.registries.values():
            await registry.unsubscribe(subscription)

    async def close(self) -> None:
        for registry in self.registries.values():
            await registry.close()

    def active(self) -> int:
        return sum(registry.active() for registry in self.registries.values())

    def active_by_kind(self) -> dict[str, int]:
        return {kind: registry.active() for kind, registry in self.registries.items()}


@dataclass(kw_only=True)
class PooledRegistry:
    """What every source's registry shares: a pool of watchers, counted, stopped with their last
    subscriber (their metric series go with them), closed with the operator. Each source's
    registry adds how it keys and makes a watcher, and closes its own clients. ``clock`` stamps
    the snapshots: the operator's own, so the planner compares times from one clock."""

    pool: WatcherPool = field(default_factory=lambda: WatcherPool())
    clock: Callable[[], float] = time.monotonic

    def join(self, key: Hashable, make: Callable[[], SourceWatcher],
             wake: Callable[[], None]) -> Subscription:
        def made() -> SourceWatcher:
            watcher = make()
            watcher.clock = self.clock
            return watcher
        return self.pool.join(key, made, wake)

    def active(self) -> int:
        return self.pool.active()

    async def unsubscribe(self, subscription: Subscription) -> None:
        stopped = await self.pool.leave(subscription)
        if stopped is not None:
            metrics.forget_unwatched(stopped.query,
                                     (w.query for w in self.pool.watchers.values()))
            await self.released(stopped)

    async def released(self, watcher: SourceWatcher) -> None:
        """A watcher stopped with its last subscriber: close what only it used (a session
        authenticated with credentials since rotated, say)."""

    async def close(self) -> None:
        await self.pool.stop_all()
        await self.close_clients()

    async def close_clients(self) -> None:
        """The source's own clients and sessions, once its watchers have stopped."""
