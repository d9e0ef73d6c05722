"""Shared etcd (v3) prefix watchers: one per distinct (connection, prefix, credentials).

As the design notes register instances: each one puts a key under a prefix, bound to a lease it
keeps alive; the key goes when the lease expires. A watcher lists the prefix at a revision, then
watches from the next revision, so nothing falls between the list and the watch. It lists again
after the watch ends for any reason (compaction of the revision it asked for, a lost
connection, a restarted server); a list that finds the same keys changes nothing, and a revision
that went backwards (a restore from snapshot) is simply the new truth.

etcd is spoken to through its JSON gateway (``gateway``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
from controller.sources.connections import EtcdConnection
from controller.sources.etcd.gateway import EtcdError, Gateway, PermissionDenied
from controller.sources.etcd.query import EtcdQuery
from controller.sources.registration import from_registration

log = logging.getLogger("shardring.etcd")

MIN_WATCH = 1.0  # a watch that ended sooner than this is followed by a pause, not a hot loop
UNREACHABLE = "etcd cannot be reached"


@dataclass(frozen=True)
class WatchKey:
    query: EtcdQuery
    credentials_digest: str


class Watcher(SourceWatcher):
    key: WatchKey

    def __init__(self, key: WatchKey, gateway: Gateway, credentials: UserPassword | None):
        super().__init__(key, key.query, f"etcd-watch:{key.query.prefix}")
        self.lists = 0  # full listings of the prefix (one at start, then one per lost watch)
        self._gateway = gateway
        self._credentials = credentials
        self._keys: dict[str, bytes] = {}
        self._instances: dict[str, Instance] = {}  # per key: values are decoded once
        self._revision = 0


    async def _run(self) -> None:
        prefix = self.key.query.prefix
        backoff = Backoff()
        while True:
            try:
                token = await self._gateway.authenticate(self._credentials) \
                    if self._credentials else None
                revision, keys = await self._gateway.list_prefix(prefix, token)
                metrics.source_reply(self.key.query, sum(map(len, keys.values())))
                self.lists += 1
                if revision < self._revision:
                    log.info("etcd revision went back from %d to %d under %s (restored from a "
                             "snapshot?): the listing is the new truth", self._revision,
                             revision, prefix)
                self._keys, self._revision = keys, revision
                self._instances = {key: self._instance(key, value) for key, value in keys.items()}
                self._publish()
                backoff.reset()
                started = time.monotonic()
                async for result in self._gateway.watch(prefix, revision + 1, token):
                    if result.get("canceled") or result.get("compact_revision"):
                        if result.get("compact_revision"):
                            log.info("etcd compacted %s past revision %d (now from %s): "
                                     "listing it again", prefix, revision + 1,
                                     result["compact_revision"])
                        elif result.get("cancel_reason"):
                            log.info("etcd ended the watch on %s: %s", prefix,
                                     str(result["cancel_reason"])[:200])
                        break  # compacted past our revision, or canceled: list again
                    self._apply(result)
                if time.monotonic() - started < MIN_WATCH:
                    await asyncio.sleep(MIN_WATCH)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - any failure: report, back off, retry
                if not isinstance(error, PermissionDenied):
                    self._gateway.rotate()
                self._fail(error)
                await asyncio.sleep(backoff.wait())

    def _apply(self, result: dict[str, Any]) -> None:
        for event in result.get("events") or []:
            kv = event.get("kv") or {}
            key = base64.b64decode(kv.get("key") or "").decode(errors="surrogateescape")
            if event.get("type") == "DELETE":
                self._keys.pop(key, None)
                self._instances.pop(key, None)
            else:
                self._keys[key] = base64.b64decode(kv.get("value") or "")
                self._instances[key] = self._instance(key, self._keys[key])
        revision = int((result.get("header") or {}).get("revision") or 0)
        self._revision = max(self._revision, revision)
        if result.get("events"):
            self._publish()

    def _instance(self, key: str, value: bytes) -> Instance:
        return from_registration(f"etcd key {shown(key)}", key[len(self.key.query.prefix):], value)

    def _publish(self) -> None:
        prefix = self.key.query.prefix
        instances = tuple(self._instances[key] for key in sorted(self._instances)
                          if key[len(prefix):])
        unchanged = self.state.snapshot is not None and self.state.error is None and \
            instances == self.state.snapshot.instances
        if unchanged:
            return
        if self.state.error == UNREACHABLE:
            log.info("etcd reachable again (prefix %s)", prefix)
        self.state = SourceState(snapshot=Snapshot(self._revision, instances, self.clock()))
        metrics.source_changed(self.key.query)
        self._notify()

    def _fail(self, error: BaseException) -> None:
        denied = isinstance(error, PermissionDenied)
        # (One message for every way of not reaching it: a killed server broke the watch, then
        # refused connections, and each said so.)
        message = str(error) if isinstance(error, EtcdError) else UNREACHABLE
        metrics.source_error(self.key.query, error_reason(
            denied=denied, over_limit="maxReplyBytes" in message,
            unreachable=not isinstance(error, EtcdError)))
        if self.state.error != message:  # one line when it starts, whatever fails meanwhile
            log.warning("%s (prefix %s)%s", message, self.key.query.prefix,
                        "" if isinstance(error, EtcdError) else f": {type(error).__name__}")
            self.state = SourceState(snapshot=self.state.snapshot, error=message,
                                     permission_denied=denied)
            self._notify()



@dataclass
class EtcdRegistry(PooledRegistry):
    connections: dict[str, EtcdConnection]
    max_reply_bytes: int = 64 << 20
    gateways: dict[str, Gateway] = field(default_factory=dict)

    @property
    def watchers(self) -> dict[WatchKey, Watcher]:
        return self.pool.watchers  # type: ignore[return-value]

    def key_for(self, query: SourceQuery, credentials: Credentials | None
                ) -> WatchKey:
        query = narrowed(query, EtcdQuery)
        return WatchKey(query, digest(credentials))

    def subscribe(self, query: SourceQuery, credentials: Credentials | None,
                  wake: Callable[[], None]) -> Subscription:
        query = narrowed(query, EtcdQuery)
        key = self.key_for(query, credentials)
        user = credentials if isinstance(credentials, UserPassword) else None
        return self.join(key, lambda: Watcher(key, self._gateway(query.connection), user),
                              wake)

    def _gateway(self, connection: str) -> Gateway:
        if connection not in self.gateways:
            self.gateways[connection] = Gateway(self.connections[connection],
                                                self.max_reply_bytes)
        return self.gateways[connection]

    async def close_clients(self) -> None:
        for gateway in list(self.gateways.values()):  # (a release may take one meanwhile)
            await gateway.close()
        self.gateways.clear()
