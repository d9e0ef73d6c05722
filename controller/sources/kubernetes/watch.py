"""Kubernetes itself as a membership source: the endpoints of a Service in the ring's namespace,
from its EndpointSlices, as kube-proxy and every service mesh read them.

A watcher lists the Service's EndpointSlices (server-side selector ``kubernetes.io/service-name``)
and watches from the list's resourceVersion, so nothing falls between the two. A watch the server
ends on time resumes from the last event's (or bookmark's) version; the watcher lists again only
when that version expired (410 Gone) or the watch failed (a lost connection, an error).
Endpoints become members as ``slices`` says; the API server is spoken to as ``api`` says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from controller import metrics
from controller.core.credentials import Credentials
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
from controller.sources.kubernetes.api import Api, ApiConnection, ApiError, Expired, Forbidden
from controller.sources.kubernetes.query import KubernetesQuery
from controller.sources.kubernetes.slices import instances_from_slices

log = logging.getLogger("shardring.kubernetes")

MIN_WATCH = 5.0  # a watch that ended sooner than this is followed by a pause, not a relist
BACKOFF_MAX = 30.0  # the API server is shared: failures wait up to this long


@dataclass(frozen=True)
class WatchKey:
    query: KubernetesQuery


class Watcher(SourceWatcher):
    key: WatchKey

    def __init__(self, key: WatchKey, api: Api):
        query = key.query
        super().__init__(key, query, f"kubernetes-watch:{query.namespace}/{query.service}")
        self.lists = 0
        self._api = api
        self._slices: dict[str, dict[str, Any]] = {}
        self._changes = 0

    async def _run(self) -> None:
        query = self.key.query
        backoff = Backoff(cap=BACKOFF_MAX)
        version = ""  # where the next watch starts; "" lists first
        while True:
            started = time.monotonic()
            try:
                if not version:
                    version, items, size = await self._api.list(query)
                    metrics.source_reply(query, size)
                    self.lists += 1
                    self._slices = {_slice_name(s): s for s in items}
                    self._publish()
                # aclosing: a watch left early (410, an error) releases its response at once.
                async with contextlib.aclosing(self._api.watch(query, version)) as events:
                    version = await self._follow(events, version)
            except asyncio.CancelledError:
                raise
            except Expired:
                version = ""
            except Exception as error:  # noqa: BLE001 - any failure: report, back off, retry
                self._fail(error)
                version = ""
                await asyncio.sleep(backoff.wait())
                continue
            # The watch ended: its time was up (it resumes where it stopped, from the last
            # event's or bookmark's version, without listing again), or its version expired (a
            # list first). At once if it lasted; after a pause if it ended early, so that a server
            # or proxy that keeps closing watches does not make this loop.
            if time.monotonic() - started < MIN_WATCH:
                await asyncio.sleep(backoff.wait())
            else:
                backoff.reset()

    async def _follow(self, events: AsyncIterator[tuple[str, dict[str, Any], int]],
                      version: str) -> str:
        """Apply watch events until the watch ends; returns the version to resume from ("" when
        it expired: 410, list again)."""
        query = self.key.query
        async for kind, body, size in events:
            if kind == "ERROR":
                if body.get("code") == 410:
                    return ""
                raise ApiError(f"the EndpointSlice watch failed: "
                               f"{str(body.get('message'))[:200]}")
            version = str((body.get("metadata") or {}).get("resourceVersion") or version)
            if kind == "BOOKMARK":
                continue
            metrics.source_reply(query, size)
            if kind == "DELETED":
                self._slices.pop(_slice_name(body), None)
            else:
                self._slices[_slice_name(body)] = body
            self._publish()
        return version

    def _publish(self) -> None:
        instances = instances_from_slices(self._slices.values(), self.key.query)
        unchanged = self.state.snapshot is not None and self.state.error is None and \
            instances == self.state.snapshot.instances
        if unchanged:
            return
        if self.state.error is not None:
            log.info("the Kubernetes API answers again (Service %s/%s)", self.key.query.namespace,
                     self.key.query.service)
        self._changes += 1
        self.state = SourceState(snapshot=Snapshot(self._changes, instances, self.clock()))
        metrics.source_changed(self.key.query)
        self._notify()

    def _fail(self, error: BaseException) -> None:
        denied = isinstance(error, Forbidden)
        unreachable = isinstance(error, aiohttp.ClientError | TimeoutError | OSError)
        message = str(error) if isinstance(error, ApiError) else \
            "the Kubernetes API cannot be reached" if unreachable else \
            f"reading EndpointSlices failed: {type(error).__name__}"
        metrics.source_error(self.key.query, error_reason(
            denied=denied, over_limit="maxReplyBytes" in message, unreachable=unreachable))
        if self.state.error != message:
            log.warning("%s (Service %s/%s)", message, self.key.query.namespace,
                        self.key.query.service)
            self.state = SourceState(snapshot=self.state.snapshot, error=message,
                                     permission_denied=denied,
                                     over_limit="maxReplyBytes" in message)
            self._notify()


def _slice_name(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("name") or "")


@dataclass
class KubernetesRegistry(PooledRegistry):
    connection: ApiConnection | None
    max_reply_bytes: int = 64 << 20
    _api: Api | None = None

    @property
    def watchers(self) -> dict[WatchKey, Watcher]:
        return self.pool.watchers  # type: ignore[return-value]

    def key_for(self, query: SourceQuery, credentials: Credentials | None = None
                ) -> WatchKey:
        query = narrowed(query, KubernetesQuery)
        return WatchKey(query)  # the operator's own credentials, whatever the ring

    def subscribe(self, query: SourceQuery, credentials: Credentials | None,
                  wake: Callable[[], None]) -> Subscription:
        query = narrowed(query, KubernetesQuery)
        key = self.key_for(query)
        return self.join(key, lambda: Watcher(key, self.api), wake)

    @property
    def api(self) -> Api:
        if self._api is None:
            if self.connection is None:
                raise ApiError("the operator has no connection to the Kubernetes API")
            self._api = Api(self.connection, self.max_reply_bytes)
        return self._api

    async def close_clients(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None
