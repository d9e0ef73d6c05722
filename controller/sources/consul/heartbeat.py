"""Whether a Consul agent still answers at all.

A hub's blocking queries wait up to WAIT_SECONDS by design, so an agent that accepts connections
and never answers (a stopped process, a host gone without a reset) would be noticed only when the
queries in flight time out, about a minute later. A heartbeat per connection asks the agent
something small every EVERY seconds, on a connection of its own (the blocking queries may hold
all of the shared pool's); no answer within TIMEOUT makes the connection's hubs say the outage and
start their queries again. Any answer, even an error, is the agent answering: what an error means
is the queries' to say.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from controller.sources.base import error_reason, stop_task
from controller.sources.connections import ConsulConnection
from controller.sources.consul.client import close_client, new_client
from controller.sources.consul.failures import Failure
from controller.sources.consul.hub import Hub

EVERY = 5.0
TIMEOUT = 10.0
REPLY_BYTES = 1 << 16  # the leader's address


def silent(timeout: float) -> Failure:
    return Failure(f"Consul does not answer (nothing in {timeout:.0f} s): the agent may be "
                   f"stopped or overloaded, or the network drops its packets",
                   error_reason(unreachable=True))


class Heartbeat:
    def __init__(self, name: str, connection: ConsulConnection,
                 hubs: Callable[[], Iterable[Hub]], every: float = EVERY,
                 timeout: float = TIMEOUT):
        self.name = name  # for the task's name: the connection's, never a token
        self.client = new_client(connection, REPLY_BYTES, connections=1)
        self._hubs = hubs
        self.every, self.timeout = every, timeout
        self.beats = 0  # answers (a test counts them)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"consul-heartbeat:{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task, self._task.get_name())
        await close_client(self.client)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            # Hubs that already fail are finding out when it answers again, with their own
            # short listings: nothing to add.
            following = [hub for hub in self._hubs() if hub.failure is None and hub.ready]
            if not following:
                continue
            try:
                async with asyncio.timeout(self.timeout):
                    await self.client.status.leader()
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                failure = silent(self.timeout)
                for hub in following:
                    await hub.restart(failure)
                continue
            except Exception:  # noqa: BLE001 - it answered: its queries say what this means
                pass
            self.beats += 1
