"""Shared etcd (v3) prefix watchers: one per distinct (connection, prefix, credentials).

As the design notes register instances: each one puts a key under a prefix, bound to a lease it
keeps alive; the key goes when the lease expires. A watcher lists the prefix at a revision, then
watches from the next revision, so nothing falls between the list and the watch. It lists again
after the watch ends for any reason (compaction of the revision it asked for, a lost
connection, a restarted server); a list that finds the same keys changes nothing, and a revision
that went backwards (a restore from snapshot) is simply the new truth.

etcd is spoken to through its JSON gateway (``/v3/kv/range``, ``/v3/watch``, on the client port)
with the operator's aiohttp: TLS with a CA and a client certificate, and no gRPC stack.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from controller import metrics
from controller.core.credentials import Credentials, UserPassword, digest
from controller.core.instance import Instance
from controller.core.source_state import Snapshot, SourceState
from controller.core.spec import EtcdQuery, SourceQuery
from controller.sources.base import (
    Backoff,
    PooledRegistry,
    SourceWatcher,
    Subscription,
    error_reason,
    http_session,
    narrowed,
)
from controller.sources.connections import EtcdConnection
from controller.sources.registration import from_registration

log = logging.getLogger("shardring.etcd")

REQUEST_TIMEOUT = 10.0
QUIET = 60.0  # seconds a watch stream may stay silent before the watcher lists again
MIN_WATCH = 1.0  # a watch that ended sooner than this is followed by a pause, not a hot loop
DECODE_OFF_LOOP_BYTES = 1 << 20


class EtcdError(Exception):
    """etcd answered with an error; the message is safe to show."""


class PermissionDenied(EtcdError):
    pass


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key starting with ``prefix`` (etcd's range_end for a prefix)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


class Gateway:
    """The few calls of etcd's JSON gateway a watcher needs, against one connection's endpoints
    (the next endpoint is tried when one cannot be reached)."""

    def __init__(self, connection: EtcdConnection, max_reply_bytes: int):
        self.connection = connection
        self.max_reply_bytes = max_reply_bytes
        self._next = 0
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connection = self.connection
            self._session = http_session(
                https=any(url.startswith("https") for url in connection.endpoints),
                ca_file=connection.ca_file, cert_file=connection.cert_file,
                key_file=connection.key_file)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _url(self, path: str) -> str:
        return self.connection.endpoints[self._next % len(self.connection.endpoints)] + path

    def rotate(self) -> None:
        """Use the next endpoint: this one failed."""
        self._next += 1

    async def call(self, path: str, body: dict[str, Any], token: str | None) -> dict[str, Any]:
        headers = {"Authorization": token} if token else None
        try:
            async with self.session.post(self._url(path), json=body, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
                                         ) as reply:
                chunks, size = [], 0
                async for chunk in reply.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > self.max_reply_bytes:
                        raise EtcdError(f"the etcd reply is larger than this operator's "
                                        f"maxReplyBytes limit ({self.max_reply_bytes} bytes)")
                    chunks.append(chunk)
                status = reply.status
        except (aiohttp.ClientConnectionError, TimeoutError):
            self.rotate()
            raise
        text = b"".join(chunks)
        if size > DECODE_OFF_LOOP_BYTES:
            return await asyncio.to_thread(_document, status, text)
        return _document(status, text)

    async def authenticate(self, credentials: UserPassword) -> str:
        reply = await self.call("/v3/auth/authenticate",
                                {"name": credentials.username,
                                 "password": credentials.password}, None)
        return str(reply.get("token") or "")

    async def list_prefix(self, prefix: str, token: str | None
                          ) -> tuple[int, dict[str, bytes]]:
        key = prefix.encode()
        reply = await self.call("/v3/kv/range",
                                {"key": b64(key), "range_end": b64(prefix_end(key))}, token)
        revision = int((reply.get("header") or {}).get("revision") or 0)
        return revision, {base64.b64decode(kv["key"]).decode(errors="replace"):
                          base64.b64decode(kv.get("value") or "") for kv in reply.get("kvs") or []}

    async def watch(self, prefix: str, start_revision: int, token: str | None
                    ) -> AsyncIterator[dict[str, Any]]:
        """The watch stream's results, as they come (one JSON object per line)."""
        key = prefix.encode()
        body = {"create_request": {"key": b64(key), "range_end": b64(prefix_end(key)),
                                   "start_revision": str(start_revision)}}
        headers = {"Authorization": token} if token else None
        # A stream quiet for QUIET seconds ends (the caller lists again, finding the same keys):
        # a connection that died without a reset cannot leave a watcher stale for long.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=QUIET)
        try:
            async with self.session.post(self._url("/v3/watch"), json=body, headers=headers,
                                         timeout=timeout) as reply:
                if reply.status != 200:
                    _document(reply.status, await reply.content.read(64 << 10))
                async for line in reply.content:
                    if line.strip():
                        yield _document(200, line).get("result") or {}
        except TimeoutError:
            return
        except aiohttp.ClientConnectionError:
            self.rotate()
            raise


def _document(status: int, text: bytes) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError:
        raise EtcdError(f"etcd answered HTTP {status} with something that is not JSON") from None
    error = document.get("error") if isinstance(document, dict) else None
    if status != 200 or error:
        message = str((error or document).get("message") or (error or document).get("error")
                      or f"HTTP {status}") if isinstance(error or document, dict) else str(error)
        if status in (401, 403) or "permission denied" in message or "authentication" in message:
            raise PermissionDenied("etcd refused the ring's credentials (permission denied)")
        raise EtcdError(f"etcd refused the request: {message[:200]}")
    if not isinstance(document, dict):
        raise EtcdError(f"etcd answered HTTP {status} with JSON that is not an object")
    return document


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
            key = base64.b64decode(kv.get("key") or "").decode(errors="replace")
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
        return from_registration(f"etcd key {key!r}", key[len(self.key.query.prefix):], value)

    def _publish(self) -> None:
        prefix = self.key.query.prefix
        instances = tuple(self._instances[key] for key in sorted(self._instances)
                          if key[len(prefix):])
        unchanged = self.state.snapshot is not None and self.state.error is None and \
            instances == self.state.snapshot.instances
        if unchanged:
            return
        self.state = SourceState(snapshot=Snapshot(self._revision, instances, self.clock()))
        metrics.source_changed(self.key.query)
        self._notify()

    def _fail(self, error: BaseException) -> None:
        denied = isinstance(error, PermissionDenied)
        message = str(error) if isinstance(error, EtcdError) else \
            f"etcd cannot be reached: {type(error).__name__}"
        metrics.source_error(self.key.query, error_reason(
            denied=denied, over_limit="maxReplyBytes" in message,
            unreachable=not isinstance(error, EtcdError)))
        if self.state.error != message:
            log.warning("%s (prefix %s)", message, self.key.query.prefix)
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
        for gateway in self.gateways.values():
            await gateway.close()
        self.gateways.clear()
