"""Kubernetes itself as a membership source: the endpoints of a Service in the ring's namespace,
from its EndpointSlices, as kube-proxy and every service mesh read them.

A watcher lists the Service's EndpointSlices (server-side selector ``kubernetes.io/service-name``)
and watches from the list's resourceVersion, so nothing falls between the two. A watch the server
ends on time resumes from the last event's (or bookmark's) version; the watcher lists again only
when that version expired (410 Gone) or the watch failed (a lost connection, an error).
Endpoints follow Kubernetes' own conditions:

* ``ready`` (nil counts as ready, as the API defines it): a member;
* ``terminating`` while still ``serving``: draining — it owns nothing in the next version, and
  keeps serving its shards until their new owners have them (make-before-break);
* not serving: not a member.

Spoken to with the operator's aiohttp (no thread per watch), with the credentials the official
client loaded (in-cluster ServiceAccount, whose token is read again as it rotates, or kubeconfig).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from controller import metrics
from controller.core.credentials import Credentials
from controller.core.instance import CRITICAL, PASSING, Instance, frozen
from controller.core.source_state import Snapshot, SourceState
from controller.core.spec import KubernetesQuery, SourceQuery
from controller.sources.base import (
    Backoff,
    PooledRegistry,
    SourceWatcher,
    Subscription,
    error_reason,
    http_session,
    narrowed,
)

log = logging.getLogger("shardring.kubernetes")

REQUEST_TIMEOUT = 10.0
WATCH_SECONDS = 290  # the API server ends a watch after this; the watcher lists again
MIN_WATCH = 5.0  # a watch that ended sooner than this is followed by a pause, not a relist
BACKOFF_MAX = 30.0  # the API server is shared: failures wait up to this long
SERVICE_NAME = "kubernetes.io/service-name"
ZONE_LABEL = "topology.kubernetes.io/zone"


class ApiError(Exception):
    """The API server answered with an error; the message is safe to show."""


class Forbidden(ApiError):
    pass


class Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


@dataclass(frozen=True)
class ApiConnection:
    """How to reach the API server, from the official client's configuration."""

    host: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    # The Authorization header, read on every request: a ServiceAccount's token rotates.
    authorization: Callable[[], str | None] = field(default=lambda: None, compare=False)


def connection_from_client(configuration: Any) -> ApiConnection:
    """``configuration`` is a kubernetes.client.Configuration (the adapter loads it)."""
    return ApiConnection(
        host=str(configuration.host).rstrip("/"), ca_file=configuration.ssl_ca_cert,
        cert_file=configuration.cert_file, key_file=configuration.key_file,
        verify=bool(configuration.verify_ssl),
        # auth_settings() runs the client's refresh hook (an in-cluster token read again).
        authorization=lambda: (configuration.auth_settings().get("BearerToken") or {}
                               ).get("value"))


class Api:
    """The two calls a watcher needs: list EndpointSlices, and watch them."""

    def __init__(self, connection: ApiConnection, max_reply_bytes: int):
        self.connection = connection
        self.max_reply_bytes = max_reply_bytes
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connection = self.connection
            self._session = http_session(
                https=connection.host.startswith("https"), ca_file=connection.ca_file,
                cert_file=connection.cert_file, key_file=connection.key_file,
                verify=connection.verify)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self) -> dict[str, str]:
        token = self.connection.authorization()
        return {"Authorization": token} if token else {}

    def _url(self, query: KubernetesQuery) -> str:
        return (f"{self.connection.host}/apis/discovery.k8s.io/v1/namespaces/"
                f"{quote(query.namespace)}/endpointslices")

    def _params(self, query: KubernetesQuery) -> dict[str, str]:
        return {"labelSelector": f"{SERVICE_NAME}={query.service}"}

    async def list(self, query: KubernetesQuery) -> tuple[str, list[dict[str, Any]], int]:
        """(resourceVersion, slices, bytes read)."""
        async with self.session.get(self._url(query), params=self._params(query),
                                    headers=self._headers(),
                                    timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)) as reply:
            body = await self._read(reply)
        document = json.loads(body)
        return str(document.get("metadata", {}).get("resourceVersion") or ""), \
            list(document.get("items") or []), len(body)

    async def watch(self, query: KubernetesQuery, resource_version: str
                    ) -> AsyncGenerator[tuple[str, dict[str, Any], int], None]:
        """(event type, object, bytes) until the server ends the watch."""
        params = {**self._params(query), "watch": "1", "resourceVersion": resource_version,
                  "allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_SECONDS)}
        timeout = aiohttp.ClientTimeout(total=None, connect=REQUEST_TIMEOUT,
                                        sock_read=WATCH_SECONDS + 30)
        async with self.session.get(self._url(query), params=params, headers=self._headers(),
                                    timeout=timeout) as reply:
            if reply.status != 200:
                await self._read(reply)  # raises the API server's error
            async for line in reply.content:
                if len(line) > self.max_reply_bytes:
                    raise ApiError(f"an EndpointSlice event is larger than this operator's "
                                   f"maxReplyBytes limit ({self.max_reply_bytes} bytes)")
                if line.strip():
                    event = json.loads(line)
                    yield str(event.get("type") or ""), event.get("object") or {}, len(line)

    async def _read(self, reply: aiohttp.ClientResponse) -> bytes:
        chunks, size = [], 0
        async for chunk in reply.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > self.max_reply_bytes:
                raise ApiError(f"the EndpointSlice list is larger than this operator's "
                               f"maxReplyBytes limit ({self.max_reply_bytes} bytes)")
            chunks.append(chunk)
        body = b"".join(chunks)
        if reply.status == 403:
            raise Forbidden("the operator may not list EndpointSlices here (RBAC: it needs "
                            "list and watch on endpointslices.discovery.k8s.io)")
        if reply.status == 410:
            raise Expired()
        if reply.status >= 400:
            raise ApiError(f"the Kubernetes API refused to list EndpointSlices: HTTP "
                           f"{reply.status}")
        return body


# ---- EndpointSlices -> instances (pure) -------------------------------------------------------

def _port(slice_: Mapping[str, Any], wanted: str | int | None) -> tuple[int | None, str | None]:
    """The slice's port for the ring, or why there is none."""
    ports = [p for p in slice_.get("ports") or [] if isinstance(p, dict)]
    if wanted is None:
        if len(ports) > 1:
            return None, "the Service has several ports: set spec.kubernetes.port to one of them"
        chosen = ports[0] if ports else None
    else:
        chosen = next((p for p in ports if p.get("name") == wanted or
                       (isinstance(wanted, int) and p.get("port") == wanted)), None)
        if chosen is None:
            return None, f"the Service has no port {wanted!r}"
    port = chosen.get("port") if chosen else None
    return (port if isinstance(port, int) else 0), None


def _name(endpoint: Mapping[str, Any], address: str) -> str:
    target = endpoint.get("targetRef") or {}
    if target.get("kind") == "Pod" and target.get("name"):
        return str(target["name"])
    return str(endpoint.get("hostname") or address)


def instances_from_slices(slices: Iterable[Mapping[str, Any]], query: KubernetesQuery
                          ) -> tuple[Instance, ...]:
    """One instance per endpoint (by pod name, else hostname, else address), sorted. An endpoint
    listed twice (slices are updated one at a time) counts once, the more available first."""
    found: dict[str, Instance] = {}
    # IPv4 slices first, then by name: a dual-stack Service lists each Pod in an IPv4 and an IPv6
    # slice, and its member must keep one address whatever the slices' (random) names.
    for slice_ in sorted(slices, key=lambda s: (s.get("addressType") != "IPv4",
                                                str((s.get("metadata") or {}).get("name")))):
        if slice_.get("addressType") == "FQDN":
            continue
        port, problem = _port(slice_, query.port)
        for endpoint in slice_.get("endpoints") or []:
            addresses = endpoint.get("addresses") or []
            if not addresses:
                continue
            address = str(addresses[0])  # all of one endpoint's addresses are one pod's
            name = _name(endpoint, address)
            origin = f"endpoint {name!r} of Service {query.service!r}"
            if problem:
                instance = Instance(origin, name, invalid=problem)
            else:
                conditions = endpoint.get("conditions") or {}
                ready = conditions.get("ready") is not False  # nil: ready (the API says so)
                serving = conditions.get("serving", ready) is not False
                terminating = conditions.get("terminating") is True
                zone = endpoint.get("zone")
                instance = Instance(
                    origin, name, address=address, port=port or 0,
                    health=PASSING if serving else CRITICAL,
                    host_labels=frozen({"zone": str(zone), ZONE_LABEL: str(zone)} if zone
                                       else None),
                    labels=frozen({"nodeName": str(endpoint["nodeName"])}
                                  if endpoint.get("nodeName") else None),
                    draining=terminating and serving)
            kept = found.get(name)
            if kept is None or _rank(instance) < _rank(kept):
                found[name] = instance
    return tuple(found[name] for name in sorted(found))


def _rank(instance: Instance) -> int:
    if instance.invalid:
        return 3
    return 0 if instance.health == PASSING and not instance.draining else \
        1 if instance.health == PASSING else 2


# ---- the watcher --------------------------------------------------------------------------------

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
