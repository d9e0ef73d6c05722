"""Whether a Consul agent still answers at all.

A hub's blocking queries wait up to WAIT_SECONDS by design, so an agent that accepts connections
and never answers (a stopped process, a host gone without a reset) would be noticed only when the
queries in flight time out, about a minute later. A heartbeat per connection asks the agent
something small every EVERY seconds, on a connection of its own (the blocking queries may hold
all of the shared pool's); MISSES answers in a row not given within TIMEOUT make the connection's
hubs say the outage and start their queries again. Any answer, even an error, is the agent
answering: what an error means is the queries' to say.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from controller.sources.base import error_reason, stop_task
from controller.sources.connections import ConsulConnection
from controller.sources.consul.client import close_client, new_client
from controller.sources.consul.failures import UNREACHABLE, Failure
from controller.sources.consul.hub import Hub

EVERY = 5.0
TIMEOUT = 10.0
# In a row (the second asked at once): one slow answer, from a client agent whose servers are
# busy, is not an outage, and restarting every hub's queries would only add to their load.
MISSES = 2
REPLY_BYTES = 1 << 16  # the leader's address

log = logging.getLogger("shardring.consul")


def silent() -> Failure:
    # (The words of any other outage: one line as it begins, whichever request finds it first.)
    return Failure(UNREACHABLE, error_reason(unreachable=True))


class Heartbeat:
    def __init__(self, name: str, connection: ConsulConnection,
                 hubs: Callable[[], Iterable[Hub]]):
        self.name = name  # for the task's name: the connection's, never a token
        self.client = new_client(connection, REPLY_BYTES, connections=1)
        self._hubs = hubs
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"consul-heartbeat:{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task, self._task.get_name())
        await close_client(self.client)

    def _following(self) -> list[Hub]:
        """The hubs that follow Consul now, or start to (their first listings hang as well).
        (Those that already fail are finding out when it answers again, with their own short
        listings: nothing to add.)"""
        return [hub for hub in self._hubs() if hub.failure is None]

    async def _run(self) -> None:
        missed = 0
        while True:
            if not missed:
                await asyncio.sleep(EVERY)
            if not self._following():
                missed = 0
                continue
            missed = 0 if await self._answers() else missed + 1
            if missed < MISSES:
                continue
            missed = 0
            try:
                for hub in self._following():
                    await hub.restart(silent())
            except Exception as error:  # noqa: BLE001 - never ends the heartbeat unseen
                log.error("restarting the Consul queries of %s failed: %r", self.name, error)

    async def _answers(self) -> bool:
        try:
            async with asyncio.timeout(TIMEOUT):
                await self.client.status.leader()
        except TimeoutError:
            return False
        except Exception:  # noqa: BLE001 - it answered: its queries say what this means
            pass
        return True
