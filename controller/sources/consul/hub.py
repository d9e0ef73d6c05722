"""What tells a Consul connection's watchers to read again, with a bounded number of connections.

A blocking query per watched service would hold a connection each: past ~200 services the agent
refuses the rest (limits.http_max_conns_per_client, HTTP 429). A hub, one per (connection,
datacenter, token), instead follows the three tables /v1/health/service reads from, each with one
blocking query for the whole datacenter:

* ``/v1/health/state/any`` filtered to the checks that are not passing (checks): small in a
  healthy datacenter; two listings compared name the services, and the nodes, whose health moved;
* ``/v1/catalog/services`` (services): a registration, a deregistration, a changed port or tag;
* ``/v1/catalog/nodes`` (nodes): a node's address or metadata.

A health change makes only the services it names read again; a catalog or node change makes
every watcher of the hub read again (one read each, however many changes came meanwhile). A
watcher whose last read saw an instance not passing is compared with every health listing too: a
check that failed and passed between two listings left no trace in them, but a read may have seen
it fail. The reads share the connection's READS connections. Watchers read first only once the
hub holds a listing of all three tables (so no change can fall between a read and the listing it
is compared to), and again when a hub that could not reach Consul reaches it again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Protocol

import consul.aio

from controller.sources.base import Backoff, stop_task
from controller.sources.consul.changes import Unhealthy, changed, disagrees, unhealthy
from controller.sources.consul.client import WAIT_SECONDS, blocking, health_reply
from controller.sources.consul.failures import Failure, describe, no_path, unknown_datacenter

log = logging.getLogger("shardring.consul")

MIN_INTERVAL = 0.05  # at most 20 listings a second per table, even if its index churns
BACKOFF_MAX = 1.0  # a returned agent is noticed within about a second
# While the hub cannot reach Consul, a listing gets this long: a restarting server holds requests
# until it has a leader (rpc_hold_timeout, 7 s by default), and one sent a moment too early would
# otherwise hold up the recovery that long. (A slow answer then is only one more retry.)
RECOVERY_TIMEOUT = 2.0
NOT_PASSING = 'Status != "passing"'
TABLES = {"health": "/v1/health/state/any", "catalog": "/v1/catalog/services",
          "nodes": "/v1/catalog/nodes"}
DATACENTERS_EVERY = 30.0  # how long the agent's list of datacenters is taken as current


class Reader(Protocol):
    """A watcher, as its hub sees it."""

    service: str

    @property
    def unsettled(self) -> Mapping[tuple[str, str], str]:
        """What its last read saw that was not passing, by (node, service ID): such a watcher
        is compared with every health listing (others only when one names their service)."""

    def nodes(self) -> frozenset[str] | None:
        """The nodes its instances run on (None: not read yet)."""

    def read_again(self) -> None: ...

    def unreachable(self, failure: Failure) -> None: ...


class Hub:
    def __init__(self, name: str, client: consul.aio.Consul, token: str | None,
                 datacenter: str | None, reads: asyncio.Semaphore,
                 said: dict[str, dict[int, str]] | None = None):
        self.name = name  # for logs: the connection and datacenter, never the token
        # What each hub of a name fails with (by id), shared by the hubs of one registry: the
        # hubs of several tokens on one connection fail together, and the outage is one line
        # (and so is its end).
        self._said = said if said is not None else {}
        self.client, self.token, self.datacenter, self.reads = client, token, datacenter, reads
        self.readers: set[Reader] = set()
        self.listings = 0  # replies of the three tables (a test counts them)
        self.everyone = 0  # times every watcher was told to read (catalog, nodes, recovery)
        self.failure: Failure | None = None  # while a table cannot be read
        self._listed: dict[str, bool] = dict.fromkeys(TABLES, False)
        self._unhealthy: Unhealthy | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self._datacenters: tuple[float, list[str] | None] | None = None  # (when, as listed)

    @property
    def ready(self) -> bool:
        """Every table listed since the last failure: a read now misses no change."""
        return all(self._listed.values())

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._follow(table), name=f"consul-{table}:{self.name}")
                       for table in TABLES]

    async def stop(self) -> None:
        self._stopped = True
        await asyncio.gather(*(stop_task(task, task.get_name()) for task in self._tasks))
        if self.failure is not None:  # (gone while failing: its outage is not said to end)
            self._forget_failure()

    async def restart(self, failure: Failure) -> None:
        """The agent stopped answering (its heartbeat says so): the outage is said now, and the
        queries in flight, which would wait out their time, start again, each listing afresh."""
        await asyncio.gather(*(stop_task(task, task.get_name()) for task in self._tasks))
        if self._stopped:  # (released meanwhile)
            return
        self._listed = dict.fromkeys(TABLES, False)
        self._failed(failure)
        self.start()

    def join(self, reader: Reader) -> None:
        self.readers.add(reader)
        if self.failure is not None:
            reader.unreachable(self.failure)
        elif self.ready:
            reader.read_again()

    def leave(self, reader: Reader) -> None:
        self.readers.discard(reader)

    async def _follow(self, table: str) -> None:
        index, last_query = 0, 0.0
        backoff = Backoff(cap=BACKOFF_MAX)
        params = [("filter", NOT_PASSING)] if table == "health" else []
        while True:
            pause = MIN_INTERVAL - (time.monotonic() - last_query)
            if pause > 0:
                await asyncio.sleep(pause)
            last_query = time.monotonic()
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that arrives as a blocking query returns (a deregistration at
                # exit, say), and the follower would run on instead of stopping.
                async with asyncio.timeout(RECOVERY_TIMEOUT if self.failure is not None and
                                           index == 0 else WAIT_SECONDS + WAIT_SECONDS / 16 + 5):
                    new_index, body = await self.client.http.get(
                        health_reply, TABLES[table],
                        params=blocking(index, self.datacenter) + params,
                        headers={"X-Consul-Token": self.token} if self.token else None, raw=True)
                listing = unhealthy(json.loads(body)) if table == "health" else None
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - any failure: report, back off, retry
                index = 0
                self._listed[table] = False
                if not (isinstance(error, TimeoutError) and self.failure is not None):
                    # (A listing abandoned while recovering leaves the outage as first said.)
                    self._failed(await self.explain(error))
                await asyncio.sleep(backoff.wait())
                continue
            backoff.reset()
            self.listings += 1
            previous, index = index, new_index
            # An index that went backwards means Consul's state was reset: a listing afresh.
            if not self._listed[table] or new_index < previous:
                self._listed[table] = True
                if listing is not None:
                    self._unhealthy = listing
                if self.ready:
                    self._reached()
            elif new_index == previous:
                continue  # the wait ended with nothing changed
            elif listing is not None:
                self._health_moved(listing)
            else:
                self._everyone()

    def _health_moved(self, listing: Unhealthy) -> None:
        before, self._unhealthy = self._unhealthy, listing
        if before is None:
            return
        services, nodes = changed(before, listing)
        for reader in list(self.readers):
            on = reader.nodes()
            if reader.service in services or on is None or (nodes and on & nodes) or \
                    (reader.unsettled and disagrees(listing, reader.service, reader.unsettled)):
                reader.read_again()

    def _everyone(self) -> None:
        self.everyone += 1
        for reader in list(self.readers):
            reader.read_again()

    async def explain(self, error: BaseException) -> Failure:
        """What a failed request means for the rings: as ``describe`` says, but Consul's "No path
        to datacenter" for a datacenter the agent does not list (a typo) is the spec's to fix,
        not an outage to wait out."""
        failure = describe(error, self.token)
        if self.datacenter is None or not no_path(error):
            return failure
        now = time.monotonic()
        if self._datacenters is None or now - self._datacenters[0] > DATACENTERS_EVERY:
            try:
                async with asyncio.timeout(RECOVERY_TIMEOUT):
                    known = list(await self.client.catalog.datacenters())
            except Exception:  # noqa: BLE001 - unknown: the failure stays as Consul said it
                known = None
            self._datacenters = (now, known)
        known = self._datacenters[1]
        if known is None or self.datacenter in known:
            return failure
        return unknown_datacenter(self.datacenter, known)

    def _failed(self, failure: Failure) -> None:
        failing = self._said.setdefault(self.name, {})
        if failing.get(id(self)) != failure.message and \
                failure.message not in failing.values():
            log.warning("%s (%s)", failure.message, self.name)
        failing[id(self)] = failure.message
        self.failure = failure
        for reader in list(self.readers):
            reader.unreachable(failure)

    def _reached(self) -> None:
        if self.failure is not None and self._forget_failure():
            log.info("Consul answers again (%s)", self.name)
        self.failure = None
        self._everyone()

    def _forget_failure(self) -> bool:
        """This hub no longer fails: True if no other hub of its name fails as it did."""
        failing = self._said.get(self.name, {})
        message = failing.pop(id(self), None)
        if not failing:
            self._said.pop(self.name, None)
        return message is not None and message not in failing.values()


def hub_name(connection: str, datacenter: str | None) -> str:
    return f"connection {connection!r}" + (f", datacenter {datacenter!r}" if datacenter else "")

