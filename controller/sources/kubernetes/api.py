"""The Kubernetes API as the watchers use it: list a Service's EndpointSlices and watch them.

Spoken to with the operator's aiohttp (no thread per watch), with the credentials the official
client loaded (in-cluster ServiceAccount, whose token is read again as it rotates, or kubeconfig).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from controller.sources.base import http_session
from controller.sources.kubernetes.query import KubernetesQuery

REQUEST_TIMEOUT = 10.0
WATCH_SECONDS = 290  # the API server ends a watch after this; the watcher resumes it
# The API server sends a bookmark to a watch at least every minute (its watch cache's bookmark
# frequency): a watch silent for longer is taken as a connection that died without a reset, and
# ended, to be resumed from its last version (which fails at once if the server is really gone).
QUIET = 90.0
SERVICE_NAME = "kubernetes.io/service-name"


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
        timeout = aiohttp.ClientTimeout(total=None, connect=REQUEST_TIMEOUT, sock_read=QUIET)
        async with self.session.get(self._url(query), params=params, headers=self._headers(),
                                    timeout=timeout) as reply:
            if reply.status != 200:
                await self._read(reply)  # raises the API server's error
            try:
                async for line in reply.content:
                    if len(line) > self.max_reply_bytes:
                        raise ApiError(f"an EndpointSlice event is larger than this operator's "
                                       f"maxReplyBytes limit ({self.max_reply_bytes} bytes)")
                    if line.strip():
                        event = json.loads(line)
                        yield str(event.get("type") or ""), event.get("object") or {}, len(line)
            except aiohttp.SocketTimeoutError:
                return  # silent for QUIET seconds: the watcher resumes from the last version

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
