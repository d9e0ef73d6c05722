"""ZooKeeper sessions as the watchers use them: one aiozk client per connection (or per
connection and credentials), started on first use, reaching a returned server within a second,
and an outage reported once by the watchers rather than by aiozk on every attempt."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiozk
import aiozk.session

from controller.sources.connections import ZooKeeperConnection

# A reading waits this long for a connection before the outage is reported (and retried).
CONNECT_TIMEOUT = 3.0
# Heartbeats go every third of it and wait the rest: a connection that went silent is found
# within this. (The operator's session owns no ephemeral node, so a short one costs nothing
# but a new session, and a full re-read, after an outage longer than this.)
SESSION_TIMEOUT = 5
# aiozk waits up to 60 s between attempts to reach a server (1, 2, 4, ... 60 s), so a returned
# server went unnoticed for up to a minute; it reads this module setting on every search.
aiozk.session.MAX_FIND_WAIT = 0.5
class _OneLineOutages(logging.Filter):
    """aiozk logs a traceback on every failed attempt to reach a server (several a second while
    one is down): the watchers report the outage once, as a condition and one log line, so those
    attempts are dropped here, and anything else aiozk says loses its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(("Couldn't connect to", "No servers available",
                                           "Connecting to", "Session closed",
                                           "Aborting connection to", "Pendings:")):
            return False
        record.exc_info, record.exc_text = None, None
        return True


for _name in ("aiozk.session", "aiozk.connection"):
    logging.getLogger(_name).addFilter(_OneLineOutages())


class Ensemble:
    """One client session per ZooKeeper connection, shared by its watchers."""

    def __init__(self, connection: ZooKeeperConnection):
        self.connection = connection
        self.client = aiozk.ZKClient(",".join(connection.hosts), chroot=connection.chroot,
                                     session_timeout=SESSION_TIMEOUT)
        self._started = False
        self._lock = asyncio.Lock()

    async def ready(self) -> aiozk.ZKClient:
        async with self._lock:
            if not self._started:
                try:
                    async with asyncio.timeout(CONNECT_TIMEOUT):  # (wait_for: see consul.hub)
                        await self.client.start()
                except TimeoutError:
                    # aiozk keeps trying in the background; a fresh client starts clean.
                    await _quietly(self.client.close())
                    self.client = aiozk.ZKClient(",".join(self.connection.hosts),
                                                 chroot=self.connection.chroot,
                                                 session_timeout=SESSION_TIMEOUT)
                    raise
                self._started = True
        return self.client

    async def close(self) -> None:
        if self._started:
            await _quietly(self.client.close())


async def _quietly(closing: Any) -> None:
    try:
        await closing
    except Exception:  # noqa: BLE001 - closing a broken session must not mask anything
        pass
