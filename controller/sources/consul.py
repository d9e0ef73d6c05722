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
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import consul
import consul.aio
from consul import base
from consul.exceptions import BadRequest

from controller import metrics
from controller.core.credentials import Credentials, Token, digest
from controller.core.instance import CRITICAL, PASSING, WARNING, Health, Instance, Weights, frozen
from controller.core.source_state import Snapshot, SourceState
from controller.core.spec import ServiceQuery, SourceQuery
from controller.sources.base import (
    Backoff,
    PooledRegistry,
    SourceWatcher,
    Subscription,
    error_reason,
    narrowed,
)
from controller.sources.connections import ConsulConnection

log = logging.getLogger("shardring.consul")

WAIT_SECONDS = 55.0
MIN_INTERVAL = 0.05  # at most 20 queries a second per watcher, even if the index churns
# Capped low so that Consul coming back is noticed within seconds; with one query per distinct
# service, a few requests a second across all watchers is not a hot loop.
BACKOFF_MAX = 1.0
REFUSED_BACKOFF_MAX = 60.0
# Consul answers a filter it cannot parse or evaluate with HTTP 500 and this text (400 for other
# malformed queries): a spec problem, not an outage.
_BEXPR_REFUSAL = "Failed to create boolean expression evaluator"
REFUSAL_TEXT_MAX = 300  # characters of Consul's own explanation kept for the ring's status
# Every watcher holds one connection open in its blocking query; aiohttp's default pool limit
# (100) would make the 101st distinct query wait. Consul's own limit is the agent's
# limits.http_max_conns_per_client (200 by default).
MAX_CONNECTIONS = 10000
# A reply this big is decoded in a thread, one entry at a time: json.loads of a 30 MB reply holds
# the GIL (and so every ring's event loop) for ~300 ms even in a thread.
DECODE_OFF_LOOP_BYTES = 1 << 20


class ReplyTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"the Consul reply is larger than this operator's maxReplyBytes limit "
                         f"({limit} bytes); narrow spec.service (tags, nodeMeta, filter)")


class BoundedHTTPClient(consul.aio.HTTPClient):
    """py-consul's aiohttp client, reading no more of a reply than the operator's limit."""

    def __init__(self, *args: Any, max_bytes: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_bytes = max_bytes

    async def _request(self, callback: Callable[[base.Response], Any], method: str, uri: str,
                       headers: dict[str, str] | None, data: Any = None,
                       connections_timeout: float | None = None, raw: bool = False) -> Any:
        timeout = aiohttp.ClientTimeout(total=connections_timeout) if connections_timeout \
            else None
        async with self._session.request(method, uri, headers=headers, data=data,
                                         **({"timeout": timeout} if timeout else {})) as resp:
            if resp.content_length is not None and resp.content_length > self.max_bytes:
                raise ReplyTooLarge(self.max_bytes)
            chunks, size = [], 0
            async for chunk in resp.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > self.max_bytes:
                    raise ReplyTooLarge(self.max_bytes)
                chunks.append(chunk)
            if resp.status == 599:
                raise consul.Timeout
            body = b"".join(chunks)
            # Text for py-consul's callbacks; the watchers' own callback keeps the bytes.
            return callback(base.Response(resp.status, resp.headers,
                                          body if raw else body.decode()))


class BoundedConsul(consul.aio.Consul):
    def __init__(self, *args: Any, max_reply_bytes: int, **kwargs: Any):
        self.max_reply_bytes = max_reply_bytes
        super().__init__(*args, **kwargs)

    def http_connect(self, host: str, port: int, scheme: str, verify: bool | str = True,
                     cert: Any = None) -> BoundedHTTPClient:
        return BoundedHTTPClient(host, port, scheme, loop=self.loop,
                                 connections_limit=self.connections_limit,
                                 connections_timeout=self.connections_timeout, verify=verify,
                                 cert=cert, max_bytes=self.max_reply_bytes)


@dataclass(frozen=True)
class WatchKey:
    query: ServiceQuery
    token_digest: str  # the token itself never goes into keys, reprs or logs


_SEVERITY: dict[str, int] = {PASSING: 0, WARNING: 1, CRITICAL: 2}


def health_status(checks: Iterable[Mapping[str, Any]] | None) -> Health:
    """An instance's health as Consul aggregates it (its DNS interface, its load balancing): the
    worst of its node's and its service's checks (an unknown status counts as critical;
    maintenance mode is a critical check); no checks at all is passing."""
    worst: Health = PASSING
    for check in checks or ():
        status = check.get("Status") or CRITICAL
        severity = _SEVERITY.get(status, 2)
        if severity > _SEVERITY[worst]:
            worst = (PASSING, WARNING, CRITICAL)[severity]
    return worst


def instance_from_health(entry: Mapping[str, Any]) -> Instance:
    """One entry of /v1/health/service as the rings see it: the raw entry carries indexes that
    change on every reply, and much more than a ring reads."""
    node = entry.get("Node") or {}
    service = entry.get("Service") or {}
    weights = service.get("Weights")
    return Instance(
        origin=f"{service.get('ID')!r} on node {node.get('Node')!r}",
        name=str(service.get("ID") or ""),
        node=str(node.get("Node") or ""),
        address=service.get("Address") or node.get("Address") or "",
        port=int(service.get("Port") or 0),
        health=health_status(entry.get("Checks")),
        weights=Weights(weights.get("Passing", 1), weights.get("Warning", 1)) if weights
        else None,
        labels=frozen(service.get("Meta")),
        host_labels=frozen(node.get("Meta")),
        tags=tuple(sorted(service.get("Tags") or ())))


def instances_from_health(entries: Iterable[Mapping[str, Any]]) -> tuple[Instance, ...]:
    """Sorted by node and service ID, so that equal replies give equal tuples."""
    return tuple(sorted(map(instance_from_health, entries), key=lambda i: (i.node, i.name)))


def health_params(query: ServiceQuery, index: int) -> list[tuple[str, str]]:
    """/v1/health/service's query parameters (Consul's HTTP API) for a blocking query."""
    params = [("index", str(index)), ("wait", f"{int(WAIT_SECONDS)}s")] if index else []
    if query.only_passing:
        params.append(("passing", "1"))
    params += [("tag", tag) for tag in query.tags]
    if query.datacenter:
        params.append(("dc", query.datacenter))
    params += [("node-meta", f"{key}:{value}") for key, value in query.node_meta]
    if query.filter:
        params.append(("filter", query.filter))
    return params


def _health_reply(response: base.Response) -> tuple[int, bytes]:
    """The reply's index and its body, still undecoded; Consul's errors as py-consul raises them."""
    code, body = response.code, response.body
    if code >= 400:
        text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
        if code == 400:
            raise BadRequest(f"{code} {text}")
        if code == 403:
            raise consul.ACLPermissionDenied(text)
        raise consul.ConsulException(f"{code} {text}")
    index = response.headers.get("X-Consul-Index")
    if not index:
        # Without it the next query would not block: 20 queries a second per watcher.
        raise consul.ConsulException("Consul's reply carries no X-Consul-Index")
    return int(index), body


def instances_from_reply(body: bytes) -> tuple[Instance, ...]:
    """The reply's entries, decoded and slimmed one at a time: the whole reply is never held
    decoded, and a thread doing this lets the event loop run between entries."""
    text = body.decode()
    decode = json.JSONDecoder().raw_decode
    start = text.find("[")
    if start < 0:
        if text.strip() in ("", "null"):
            return ()
        raise ValueError("Consul's reply is not a JSON list")

    def entries() -> Iterator[dict[str, Any]]:
        position = _skip(text, start + 1)
        while position < len(text) and text[position] != "]":
            entry, position = decode(text, position)
            yield entry
            position = _skip(text, position)
    return instances_from_health(entries())


def _skip(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n,":
        position += 1
    return position


def new_client(connection: ConsulConnection, max_reply_bytes: int) -> consul.aio.Consul:
    """One client (one aiohttp session and connection pool) per Consul connection, shared by all
    its watchers: a client per watcher loaded the CA store each time, ~0.9 MB per service query."""
    client = BoundedConsul(host=connection.host, port=connection.port, scheme=connection.scheme,
                           verify=connection.verify if connection.scheme == "https" else False,
                           connections_limit=MAX_CONNECTIONS, max_reply_bytes=max_reply_bytes)
    # py-consul lets CONSUL_HTTP_TOKEN override the constructor's token; every request here
    # carries the ring's own token explicitly, and nothing falls back to the environment.
    client.token = None
    return client


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
                    self._client.http.get(_health_reply, f"/v1/health/service/{query.service}",
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


async def _close(client: consul.aio.Consul) -> None:
    try:
        await client.http.close()
    except Exception:  # noqa: BLE001 - closing a broken session must not mask the real error
        pass


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
            await _close(client)
        self.clients.clear()
