"""Shared Consul blocking-query watchers: one per distinct query, however many rings need it.

Rules from Consul's blocking-query documentation:
* ``/v1/health/service/<name>?index=I&wait=W`` returns when the index moves past I or after W
  plus up to W/16 of jitter, so the client timeout is W + W/16 + a margin;
* a reply is not a change: the sorted instances are compared before anyone is woken;
* an index that goes backwards (agent restart, snapshot restore) resets to 0;
* errors back off with jitter, and a churning index is rate-limited, so nothing loops hot;
* a query Consul refuses as malformed (a bad filter expression) backs off much longer, since only
  a spec change fixes it, and that starts a new watcher.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import consul
import consul.aio
from consul.exceptions import BadRequest

from controller import metrics
from controller.core.credentials import Credentials, Token, digest
from controller.core.instance import Instance
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
from controller.sources.connections import ConsulConnection
from controller.sources.consul.client import (
    WAIT_SECONDS,
    ReplyTooLarge,
    close_client,
    health_params,
    health_reply,
    new_client,
)
from controller.sources.consul.decode import instances_from_reply
from controller.sources.consul.query import ServiceQuery

log = logging.getLogger("shardring.consul")

MIN_INTERVAL = 0.05  # at most 20 queries a second per watcher, even if the index churns
# Capped low so that Consul coming back is noticed within seconds; with one query per distinct
# service, a few requests a second across all watchers is not a hot loop.
BACKOFF_MAX = 1.0
REFUSED_BACKOFF_MAX = 60.0
# Consul answers a filter it cannot parse or evaluate with HTTP 500 and this text (400 for other
# malformed queries): a spec problem, not an outage.
_BEXPR_REFUSAL = "Failed to create boolean expression evaluator"
REFUSAL_TEXT_MAX = 300  # characters of Consul's own explanation kept for the ring's status
# A reply this big is decoded in a thread, one entry at a time: json.loads of a 30 MB reply holds
# the GIL (and so every ring's event loop) for ~300 ms even in a thread.
DECODE_OFF_LOOP_BYTES = 1 << 20


@dataclass(frozen=True)
class WatchKey:
    query: ServiceQuery
    token_digest: str  # the token itself never goes into keys, reprs or logs


class Watcher(SourceWatcher):
    key: WatchKey

    def __init__(self, key: WatchKey, client: consul.aio.Consul, token: str | None):
        super().__init__(key, key.query, f"consul-watch:{key.query.service}")
        self._client = client
        self._token = token
        self.changes = 0  # membership changes seen
        self.requests = 0  # queries sent (a refused query must not make this climb fast)

    async def _run(self) -> None:
        query = self.key.query
        index = 0
        backoff = Backoff(cap=BACKOFF_MAX)
        last_query = 0.0
        while True:
            pause = MIN_INTERVAL - (time.monotonic() - last_query)
            if pause > 0:
                await asyncio.sleep(pause)
            last_query = time.monotonic()
            self.requests += 1
            try:
                new_index, body = await asyncio.wait_for(
                    self._client.http.get(health_reply, f"/v1/health/service/{query.service}",
                                          params=health_params(query, index),
                                          headers={"X-Consul-Token": self._token}
                                          if self._token else None, raw=True),
                    timeout=WAIT_SECONDS + WAIT_SECONDS / 16 + 5)
                metrics.source_reply(query, len(body))
                instances = await asyncio.to_thread(instances_from_reply, body) \
                    if len(body) > DECODE_OFF_LOOP_BYTES else instances_from_reply(body)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - any failure: report, back off, retry
                self._fail(error)
                index = 0  # the next reply comes at once, so recovery is seen at once
                # A broken connection is dropped from the pool by aiohttp; the retry opens
                # a new one.
                # Only a spec change fixes a refused or oversized query (and it starts a new
                # watcher): asking again soon would only cost Consul and us the same reply.
                slow = self.state.refused or self.state.over_limit
                await asyncio.sleep(backoff.wait(REFUSED_BACKOFF_MAX if slow else None))
                continue
            backoff.reset()
            new_index = int(new_index or 0)
            # An index that goes backwards means Consul's state was reset: start over.
            index = 0 if new_index < index else new_index
            self._succeed(instances, new_index)
            # The raw reply (checks, outputs, raft indexes) would otherwise stay alive in this
            # frame through the next 55-second query: 100 watchers held ~30 MB that way.
            del body, instances

    def _fail(self, error: BaseException) -> None:
        denied = isinstance(error, consul.ACLPermissionDenied)
        refused = isinstance(error, BadRequest) or (
            isinstance(error, consul.ConsulException) and _BEXPR_REFUSAL in str(error))
        over_limit = isinstance(error, ReplyTooLarge)
        message = "Consul refused the ACL token (permission denied)" if denied else \
            f"Consul query failed: {type(error).__name__}"
        if over_limit:
            message = str(error)
        elif refused:
            message = f"Consul refused the query: {self._refusal(error)}"
        elif not denied and isinstance(error, consul.ConsulException):
            message = "Consul query failed: Consul returned an error"
        metrics.source_error(self.key.query, error_reason(
            denied=denied, refused=refused, over_limit=over_limit,
            unreachable=isinstance(error, aiohttp.ClientConnectionError | TimeoutError)))
        if self.state.error != message:
            log.warning("%s for service %s", message, self.key.query.service)
            self.state = SourceState(snapshot=self.state.snapshot, error=message,
                                     permission_denied=denied, refused=refused,
                                     over_limit=over_limit)
            self._notify()

    def _refusal(self, error: BaseException) -> str:
        """Consul's explanation (py-consul's text is "<code> <body>"), one line, bounded, and
        never carrying the token, should Consul ever echo it."""
        text = " ".join(str(error).split())
        code, _, body = text.partition(" ")
        text = body if code.isdigit() else text
        if self._token:
            text = text.replace(self._token, "***")
        return text[:REFUSAL_TEXT_MAX] or "HTTP 400"

    def _succeed(self, instances: tuple[Instance, ...], index: int) -> None:
        # Instances are sorted values: plain equality is the comparison.
        unchanged = self.state.snapshot is not None and self.state.error is None and \
            instances == self.state.snapshot.instances
        if unchanged:
            return  # a reply is not a change
        self.state = SourceState(snapshot=Snapshot(index, instances, self.clock()))
        self.changes += 1
        metrics.source_changed(self.key.query)
        self._notify()


@dataclass
class WatcherRegistry(PooledRegistry):
    connections: dict[str, ConsulConnection]
    max_reply_bytes: int = 64 << 20
    clients: dict[str, consul.aio.Consul] = field(default_factory=dict)

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
        return self.join(key, lambda: Watcher(key, self._client(query.connection), token),
                              wake)

    def _client(self, connection: str) -> consul.aio.Consul:
        if connection not in self.clients:
            self.clients[connection] = new_client(self.connections[connection],
                                                  self.max_reply_bytes)
        return self.clients[connection]

    async def close_clients(self) -> None:
        for client in self.clients.values():
            await close_client(client)
        self.clients.clear()
