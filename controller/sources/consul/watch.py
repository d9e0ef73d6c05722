"""Shared Consul watchers: one per distinct query, however many rings need it.

A watcher holds no connection of its own: its hub (``hub``) follows the datacenter's health,
services and nodes with three blocking queries and tells the watchers whose service may have
changed to read it again (``/v1/health/service/<name>``, one request). So the connections to an
agent stay bounded (client.MAX_CONNECTIONS) however many services are watched.

* a reply is not a change: the sorted instances are compared before anyone is woken;
* a read that fails is retried with jitter; a query Consul refuses as malformed (a bad filter
  expression) or whose reply is too big waits much longer, since only a spec change fixes it, and
  that starts a new watcher; an agent that cannot be reached is the hub's to report, and its
  return makes every watcher read again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import consul.aio

from controller import metrics
from controller.core.credentials import Credentials, Token, digest
from controller.core.instance import PASSING, Instance
from controller.core.source_state import Snapshot, SourceState
from controller.core.spec import SourceQuery
from controller.sources.base import (
    Backoff,
    PooledRegistry,
    SourceWatcher,
    Subscription,
    narrowed,
)
from controller.sources.connections import ConsulConnection
from controller.sources.consul.client import (
    READS,
    close_client,
    health_params,
    health_reply,
    new_client,
)
from controller.sources.consul.decode import instances_from_reply
from controller.sources.consul.failures import Failure
from controller.sources.consul.heartbeat import Heartbeat
from controller.sources.consul.hub import Hub, hub_name
from controller.sources.consul.query import ServiceQuery

log = logging.getLogger("shardring.consul")

READ_TIMEOUT = 30.0
BACKOFF_MAX = 5.0  # a read that failed while its hub reaches Consul
REFUSED_BACKOFF_MAX = 60.0
# A reply this big is decoded in a thread, one entry at a time: json.loads of a 30 MB reply holds
# the GIL (and so every ring's event loop) for ~300 ms even in a thread.
DECODE_OFF_LOOP_BYTES = 1 << 20


@dataclass(frozen=True)
class WatchKey:
    query: ServiceQuery
    token_digest: str  # the token itself never goes into keys, reprs or logs


class Watcher(SourceWatcher):
    key: WatchKey

    def __init__(self, key: WatchKey, hub: Hub):
        super().__init__(key, key.query, f"consul-watch:{key.query.service}")
        self.service = key.query.service
        self._hub = hub
        self._due = asyncio.Event()
        self.changes = 0  # membership changes seen
        self.requests = 0  # reads sent (a refused query must not make this climb fast)
        self.unsettled: dict[tuple[str, str], str] = {}  # not passing at the last read
        # Where its published instances run, set once per change (not per health listing).
        self._nodes: frozenset[str] | None = None

    # ---- what the hub says ----------------------------------------------------------------------

    def nodes(self) -> frozenset[str] | None:
        return self._nodes

    def read_again(self) -> None:
        self._due.set()

    def unreachable(self, failure: Failure) -> None:
        metrics.source_error(self.key.query, failure.reason)
        self._report(failure)

    # ---- the loop -------------------------------------------------------------------------------

    def start(self) -> None:
        super().start()
        self._hub.join(self)

    async def stop(self) -> None:
        self._hub.leave(self)
        await super().stop()

    async def _run(self) -> None:
        query = self.key.query
        backoff = Backoff(cap=BACKOFF_MAX)
        while True:
            await self._due.wait()
            self._due.clear()
            self.requests += 1
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that arrives as the reply does, and the watcher would not stop.
                async with self._hub.reads, asyncio.timeout(READ_TIMEOUT):
                    index, body = await self._hub.client.http.get(
                        health_reply, f"/v1/health/service/{query.service}",
                        params=health_params(query), raw=True,
                        headers={"X-Consul-Token": self._hub.token}
                        if self._hub.token else None)
                metrics.source_reply(query, len(body))
                instances = await asyncio.to_thread(instances_from_reply, body) \
                    if len(body) > DECODE_OFF_LOOP_BYTES else instances_from_reply(body)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - any failure: report, back off, retry
                failure = await self._hub.explain(error)
                metrics.source_error(query, failure.reason)
                self._report(failure)
                if self._hub.failure is None:  # else the hub's recovery reads again
                    slow = failure.refused or failure.over_limit or failure.denied
                    await asyncio.sleep(backoff.wait(REFUSED_BACKOFF_MAX if slow else None))
                    self._due.set()
                continue
            backoff.reset()
            self.unsettled = {(i.node, i.name): i.health for i in instances
                              if i.health != PASSING}
            if query.only_passing:  # as Consul's ?passing would: every check passing
                instances = tuple(i for i in instances if i.health == PASSING)
            self._succeed(instances, int(index or 0))
            # The raw reply (checks, outputs, raft indexes) would otherwise stay alive in this
            # frame until the next read.
            del body, instances

    def _report(self, failure: Failure) -> None:
        if self.state.error != failure.message:
            self.state = SourceState(snapshot=self.state.snapshot, error=failure.message,
                                     permission_denied=failure.denied, refused=failure.refused,
                                     over_limit=failure.over_limit)
            self._notify()

    def _succeed(self, instances: tuple[Instance, ...], index: int) -> None:
        # Instances are sorted values: plain equality is the comparison.
        unchanged = self.state.snapshot is not None and self.state.error is None and \
            instances == self.state.snapshot.instances
        if unchanged:
            return  # a reply is not a change
        self.state = SourceState(snapshot=Snapshot(index, instances, self.clock()))
        self._nodes = frozenset(i.node for i in instances)
        self.changes += 1
        metrics.source_changed(self.key.query)
        self._notify()


@dataclass
class WatcherRegistry(PooledRegistry):
    connections: dict[str, ConsulConnection]
    max_reply_bytes: int = 64 << 20
    clients: dict[str, consul.aio.Consul] = field(default_factory=dict)
    hubs: dict[tuple[str, str | None, str], Hub] = field(default_factory=dict)
    heartbeats: dict[str, Heartbeat] = field(default_factory=dict)  # by connection
    _reads: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    _said: dict[str, dict[int, str]] = field(default_factory=dict)  # failing hubs (hub.py)

    @property
    def watchers(self) -> dict[WatchKey, Watcher]:
        return self.pool.watchers  # type: ignore[return-value]

    def key_for(self, query: SourceQuery, credentials: Credentials | None
                ) -> WatchKey:
        query = narrowed(query, ServiceQuery)
        return WatchKey(query, digest(credentials))

    def subscribe(self, query: SourceQuery, credentials: Credentials | None,
                  wake: Callable[[], None]) -> Subscription:
        query = narrowed(query, ServiceQuery)
        key = self.key_for(query, credentials)
        token = credentials.value if isinstance(credentials, Token) else None
        return self.join(key, lambda: Watcher(key, self._hub(query, key.token_digest, token)),
                         wake)

    def _hub(self, query: ServiceQuery, token_digest: str, token: str | None) -> Hub:
        """One per (connection, datacenter, token): what each of them may see differs."""
        name = (query.connection, query.datacenter, token_digest)
        if name not in self.hubs:
            if query.connection not in self.clients:
                self.clients[query.connection] = new_client(
                    self.connections[query.connection], self.max_reply_bytes)
                self._reads[query.connection] = asyncio.Semaphore(READS)
            if query.connection not in self.heartbeats:
                heartbeat = Heartbeat(f"connection {query.connection!r}",
                                      self.connections[query.connection],
                                      functools.partial(self._hubs_of, query.connection))
                heartbeat.start()
                self.heartbeats[query.connection] = heartbeat
            hub = Hub(hub_name(query.connection, query.datacenter),
                      self.clients[query.connection], token, query.datacenter,
                      self._reads[query.connection], self._said)
            hub.start()
            self.hubs[name] = hub
        return self.hubs[name]

    def _hubs_of(self, connection: str) -> list[Hub]:
        return [hub for (name, _, _), hub in self.hubs.items() if name == connection]

    async def released(self, watcher: SourceWatcher) -> None:
        """A hub no watcher uses any more stops (its token rotated, its rings gone). Rings
        deleted together release at once: each hub is taken by one of them (the others found
        it gone, KeyError, and their workers failed)."""
        for name, hub in list(self.hubs.items()):
            if not hub.readers and self.hubs.get(name) is hub:
                del self.hubs[name]
                await hub.stop()
        for connection, heartbeat in list(self.heartbeats.items()):
            if not self._hubs_of(connection) and self.heartbeats.get(connection) is heartbeat:
                del self.heartbeats[connection]
                await heartbeat.stop()

    async def close_clients(self) -> None:
        for hub in list(self.hubs.values()):  # (a release may take one meanwhile)
            await hub.stop()
        self.hubs.clear()
        for heartbeat in self.heartbeats.values():
            await heartbeat.stop()
        self.heartbeats.clear()
        for client in self.clients.values():
            await close_client(client)
        self.clients.clear()
