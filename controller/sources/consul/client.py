"""Consul's HTTP API as the watchers use it: py-consul's aiohttp client reading no more of a
reply than the operator's limit, one client per connection, and the health endpoint's
parameters and replies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import consul
import consul.aio
from consul import base
from consul.exceptions import BadRequest

from controller.sources.connections import ConsulConnection
from controller.sources.consul.query import ServiceQuery

WAIT_SECONDS = 55.0
# Connections to one Consul agent, whatever the number of services watched through it: each hub
# (datacenter and token) holds three blocking queries, and reads share READS more. The agent
# refuses an address more than limits.http_max_conns_per_client (200 by default) with HTTP 429.
MAX_CONNECTIONS = 64
READS = 16

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


def blocking(index: int, datacenter: str | None = None) -> list[tuple[str, str]]:
    """A blocking query's parameters: it returns once Consul's index moves past ``index`` (or
    after WAIT_SECONDS); index 0 answers at once."""
    params = [("index", str(index)), ("wait", f"{int(WAIT_SECONDS)}s")] if index else []
    if datacenter:
        params.append(("dc", datacenter))
    return params


def health_params(query: ServiceQuery) -> list[tuple[str, str]]:
    """/v1/health/service's query parameters (Consul's HTTP API), for a read (not blocking).
    Never ``passing``: the watcher keeps only passing instances itself when the query asks, but
    must see the others to know when a health listing disagrees with what it read."""
    params = [("tag", tag) for tag in query.tags]
    if query.datacenter:
        params.append(("dc", query.datacenter))
    params += [("node-meta", f"{key}:{value}") for key, value in query.node_meta]
    if query.filter:
        params.append(("filter", query.filter))
    return params


class TooManyConnections(consul.ConsulException):
    """HTTP 429: the agent refuses this address's connections beyond its limit."""


def health_reply(response: base.Response) -> tuple[int, bytes]:
    """The reply's index and its body, still undecoded; Consul's errors as py-consul raises them."""
    code, body = response.code, response.body
    if code >= 400:
        text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
        if code == 429:
            raise TooManyConnections(f"{code} {text}")
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


def new_client(connection: ConsulConnection, max_reply_bytes: int,
               connections: int = MAX_CONNECTIONS) -> consul.aio.Consul:
    """One client (one aiohttp session and connection pool) per Consul connection, shared by all
    its watchers: a client per watcher loaded the CA store each time, ~0.9 MB per service query."""
    client = BoundedConsul(host=connection.host, port=connection.port, scheme=connection.scheme,
                           verify=connection.verify if connection.scheme == "https" else False,
                           connections_limit=connections, max_reply_bytes=max_reply_bytes)
    # py-consul lets CONSUL_HTTP_TOKEN override the constructor's token; every request here
    # carries the ring's own token explicitly, and nothing falls back to the environment.
    client.token = None
    return client


async def close_client(client: consul.aio.Consul) -> None:
    try:
        await client.http.close()
    except Exception:  # noqa: BLE001 - closing a broken session must not mask the real error
        pass


