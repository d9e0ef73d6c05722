"""etcd's JSON gateway (``/v3/kv/range``, ``/v3/watch``, ``/v3/auth/authenticate`` on the client
port), spoken with the operator's aiohttp: TLS with a CA and a client certificate, no gRPC stack,
and no more of a reply read than the operator's limit."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from controller.core.credentials import UserPassword
from controller.sources.base import http_session
from controller.sources.connections import EtcdConnection

REQUEST_TIMEOUT = 10.0
QUIET = 60.0  # seconds a watch stream may stay silent before the watcher lists again
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
        return revision, {base64.b64decode(kv["key"]).decode(errors="surrogateescape"):
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


