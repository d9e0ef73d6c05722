"""Shared ZooKeeper children watchers: one per distinct (connection, path, address field).

As the design notes register instances: each one creates an ephemeral node under the service
path (its data plain ``host:port`` or JSON, such as ``{"frontend": ...}``); the node goes with
the instance's session. A watcher reads the children and each child's data with watches set,
and reads everything again whenever a watch fires, after a lost connection or session, and at
the latest every ``REREAD`` seconds; a reading that finds the same members changes nothing.

aiozk is the client (``ensemble``): asyncio-native, with child and data watches re-set on
reconnection.
With credentials, a session of its own per (connection, credentials) authenticates with the
digest scheme before every reading (ZooKeeper forgets it with the connection): rings with
different credentials never share a session, so one cannot read what only another may.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import aiozk
from aiozk import WatchEvent, exc, protocol
from aiozk.states import States

from controller import metrics
from controller.core.credentials import Credentials, UserPassword, digest
from controller.core.instance import Instance
from controller.core.printable import shown
from controller.core.source_state import Snapshot, SourceState
from controller.core.spec import SourceQuery
from controller.sources.base import (
    Backoff,
    PooledRegistry,
    SourceWatcher,
    Subscription,
    error_reason,
    narrowed,
)
from controller.sources.connections import ZooKeeperConnection
from controller.sources.registration import from_registration
from controller.sources.zookeeper.ensemble import CONNECT_TIMEOUT, Ensemble
from controller.sources.zookeeper.query import ZooKeeperQuery

log = logging.getLogger("shardring.zookeeper")

# A safety net, not the mechanism: watches wake a watcher within milliseconds; this catches a
# watch lost with an expired session before the client re-set it.
REREAD = 30.0
_PARENT_EVENTS = (WatchEvent.CHILDREN_CHANGED, WatchEvent.DELETED, WatchEvent.CREATED)
_CHILD_EVENTS = (WatchEvent.DATA_CHANGED, WatchEvent.DELETED)


@dataclass(frozen=True)
class WatchKey:
    query: ZooKeeperQuery
    credentials_digest: str = ""


class Watcher(SourceWatcher):
    key: WatchKey

    def __init__(self, key: WatchKey, ensemble: Ensemble, credentials: UserPassword | None = None):
        super().__init__(key, key.query, f"zk-watch:{key.query.path}")
        self._credentials = credentials
        self.reads = 0  # full readings of the children (watch events, reconnections)
        self._ensemble = ensemble
        self._changed = asyncio.Event()
        self._watched: set[tuple[int, str]] = set()

    async def stop(self) -> None:
        await super().stop()
        self._unwatch(set())

    def _fire(self, _path: str) -> None:
        self._changed.set()

    async def _run(self) -> None:
        backoff = Backoff()
        while True:
            try:
                client = await self._ensemble.ready()
                self._changed.clear()
                # aiozk waits for a connection as long as it takes: bound it, so an outage
                # is reported and retried rather than silent.
                async with asyncio.timeout(CONNECT_TIMEOUT):  # (wait_for: see consul.hub)
                    instances = await self._read(client)
                self.reads += 1
                self._publish(instances)
                backoff.reset()
                await self._until_changed(client)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - any failure: report, back off, retry
                self._fail(error)
                await asyncio.sleep(backoff.wait())

    async def _until_changed(self, client: aiozk.ZKClient) -> None:
        """Until a watch fires or REREAD passes; raises ConnectionLoss as soon as the session's
        connection is lost, so that the outage is reported at once, not at the next reading."""
        state = client.session.state
        lost = state.wait_for(States.SUSPENDED, States.LOST)
        changed = asyncio.ensure_future(self._changed.wait())
        # A server that goes away closes the connection, which ends its read loop at once;
        # aiozk itself notices only at its next heartbeat (up to a session timeout later).
        reading = getattr(client.session.conn, "read_loop_task", None)
        waits = {lost, changed} | ({reading} if reading is not None else set())
        try:
            await asyncio.wait(waits, timeout=REREAD, return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
            if not lost.done():
                try:  # (aiozk keeps a waiting future until the next transition)
                    state.remove_waiting(lost, States.SUSPENDED, States.LOST)
                except KeyError:
                    pass
                lost.cancel()
        ended = reading is not None and reading.done()
        if (ended or (lost.done() and not lost.cancelled())) and not self._changed.is_set():
            raise exc.ConnectionLoss()

    async def _read(self, client: aiozk.ZKClient) -> tuple[Instance, ...]:
        query = self.key.query
        if self._credentials:
            user, password = self._credentials.username, self._credentials.password
            await client.send(protocol.AuthRequest(type=0, scheme="digest",
                                                   auth=f"{user}:{password}".encode()))
        wanted = {(event, client.normalize_path(query.path)) for event in _PARENT_EVENTS}
        self._watch(client, wanted)  # before reading: a change in between still wakes us
        try:
            children = sorted(await client.get_children(query.path, watch=True))
        except exc.NoNode:
            if await client.exists(query.path, watch=True):  # its creation wakes us...
                self._changed.set()  # ...unless it was created in between: read again
            children = []
        paths = {child: f"{query.path}/{child}" for child in children}
        for child_path in paths.values():
            wanted |= {(event, client.normalize_path(child_path)) for event in _CHILD_EVENTS}
        self._watch(client, wanted)
        self._unwatch(wanted)
        values = await asyncio.gather(*(self._data(client, p) for p in paths.values()))
        metrics.source_reply(query, sum(len(v) for v in values if v is not None))
        return tuple(from_registration(f"ZooKeeper node {shown(paths[child])}", child, value,
                                       query.address_field)
                     for child, value in zip(children, values, strict=True) if value is not None)

    @staticmethod
    async def _data(client: aiozk.ZKClient, path: str) -> bytes | None:
        try:
            data = await client.get_data(path, watch=True)
        except exc.NoNode:
            return None  # gone since the children were read; its event wakes us again
        return data if isinstance(data, bytes) else str(data or "").encode()

    def _watch(self, client: aiozk.ZKClient, wanted: set[tuple[int, str]]) -> None:
        for event, path in wanted - self._watched:
            client.session.add_watch_callback(event, path, self._fire)
        self._watched |= wanted

    def _unwatch(self, keep: set[tuple[int, str]]) -> None:
        session = self._ensemble.client.session
        for event, path in self._watched - keep:
            try:
                session.remove_watch_callback(event, path, self._fire)
            except KeyError:
                pass
        self._watched &= keep

    def _publish(self, instances: tuple[Instance, ...]) -> None:
        unchanged = self.state.snapshot is not None and self.state.error is None and \
            instances == self.state.snapshot.instances
        if unchanged:
            return
        if self.state.error is not None:
            log.info("ZooKeeper reachable again (path %s)", self.key.query.path)
        self.state = SourceState(snapshot=Snapshot(self.reads, instances, self.clock()))
        metrics.source_changed(self.key.query)
        self._notify()

    def _fail(self, error: BaseException) -> None:
        denied = isinstance(error, exc.NoAuth | exc.AuthFailed)
        unreachable = isinstance(error, exc.ConnectionLoss | exc.SessionLost | exc.ConnectError |
                                 exc.TimeoutError | TimeoutError | OSError)
        message = "ZooKeeper refused the ring's credentials for the path (permission denied)" \
            if denied else "ZooKeeper cannot be reached" if unreachable else \
            f"the ZooKeeper query failed: {type(error).__name__}"
        metrics.source_error(self.key.query, error_reason(denied=denied, unreachable=unreachable))
        if self.state.error != message:  # one line when it starts, whatever fails meanwhile
            log.warning("%s (path %s): %s", message, self.key.query.path, type(error).__name__)
            self.state = SourceState(snapshot=self.state.snapshot, error=message,
                                     permission_denied=denied)
            self._notify()



@dataclass
class ZooKeeperRegistry(PooledRegistry):
    connections: dict[str, ZooKeeperConnection]
    ensembles: dict[str, Ensemble] = field(default_factory=dict)

    @property
    def watchers(self) -> dict[WatchKey, Watcher]:
        return self.pool.watchers  # type: ignore[return-value]

    def key_for(self, query: SourceQuery, credentials: Credentials | None
                ) -> WatchKey:
        query = narrowed(query, ZooKeeperQuery)
        return WatchKey(query, digest(credentials))

    def subscribe(self, query: SourceQuery, credentials: Credentials | None,
                  wake: Callable[[], None]) -> Subscription:
        query = narrowed(query, ZooKeeperQuery)
        key = self.key_for(query, credentials)
        user = credentials if isinstance(credentials, UserPassword) else None
        return self.join(key, lambda: Watcher(
            key, self._ensemble(query.connection, key.credentials_digest), user), wake)

    def _ensemble(self, connection: str, credentials_digest: str) -> Ensemble:
        """A session per connection and credentials: digest auth is granted to a session."""
        name = _ensemble_name(connection, credentials_digest)
        if name not in self.ensembles:
            self.ensembles[name] = Ensemble(self.connections[connection])
        return self.ensembles[name]

    async def released(self, watcher: SourceWatcher) -> None:
        """The session of credentials no watcher uses any more (rotated, or their rings gone)
        is closed: it would otherwise stay open, heartbeating, until the operator exits."""
        def name(key: WatchKey) -> str:
            return _ensemble_name(key.query.connection, key.credentials_digest)
        if not isinstance(watcher.key, WatchKey):
            return
        unused = name(watcher.key)
        if all(name(other) != unused for other in self.watchers):
            ensemble = self.ensembles.pop(unused, None)
            if ensemble is not None:
                await ensemble.close()

    async def close_clients(self) -> None:
        for ensemble in list(self.ensembles.values()):  # (a release may take one meanwhile)
            await ensemble.close()
        self.ensembles.clear()


def _ensemble_name(connection: str, credentials_digest: str) -> str:
    return f"{connection}\0{credentials_digest}"
