"""Many services through one real Consul agent with its default limits: the connections stay
bounded (the agent refuses an address more than limits.http_max_conns_per_client = 200 with HTTP
429), a health change makes only its own service read again, and a 429 says which limit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from controller.sources.connections import ConsulConnection
from controller.sources.consul.client import MAX_CONNECTIONS
from controller.sources.consul.query import ServiceQuery
from controller.sources.consul.watch import WatcherRegistry
from controller.testing import ConsulAgent
from controller.testing.consul_helpers import CatalogFleet
from controller.testing.processes import connections_to

pytestmark = pytest.mark.controlplane
SERVICES = 250  # more than the agent's default 200 connections per client address


async def until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not check():
        assert loop.time() - started < timeout, what
        await asyncio.sleep(0.05)


def test_hundreds_of_services_share_a_bounded_number_of_connections(control_plane,
                                                                    consul_client):
    tag = uuid.uuid4().hex[:6]
    fleet = CatalogFleet(consul_client)
    services = [f"scale-{tag}-{n}" for n in range(SERVICES)]
    fleet.register([(f"node-{tag}-{n % 20}", service, f"{service}-{i}", "10.0.0.1", 9000 + i)
                    for n, service in enumerate(services) for i in range(2)])
    port = int(control_plane.consul_addr.rsplit(":", 1)[1])

    async def scenario() -> None:
        registry = WatcherRegistry(
            {"default": ConsulConnection.from_address("default", control_plane.consul_addr)})
        subscriptions = [registry.subscribe(ServiceQuery("default", s), None, lambda: None)
                         for s in services]
        watchers = {s.watch.query.service: s.watch for s in subscriptions}
        peak = 0

        def all_read() -> bool:
            nonlocal peak
            peak = max(peak, connections_to(port))
            return all(w.state.snapshot is not None and len(w.state.snapshot.instances) == 2
                       for w in watchers.values())
        try:
            await until(all_read, "every service read")
            assert not [w.state.error for w in watchers.values() if w.state.error]
            assert peak <= MAX_CONNECTIONS, f"{peak} connections to the agent"
            # One instance fails its check (then passes): its service alone is read again —
            # unless a catalog or node change elsewhere (the agent's own) made every watcher
            # read meanwhile, as it should; then look again.
            (hub,) = registry.hubs.values()
            for attempt in range(4):
                requests = {name: w.requests for name, w in watchers.items()}
                everyone = hub.everyone
                passing = attempt % 2 == 1
                await asyncio.to_thread(fleet.set_health, {f"{services[7]}-1": passing})
                await until(lambda p=passing: len(watchers[services[7]].state.snapshot.instances)
                            == (2 if p else 1), "the instance followed")
                await asyncio.sleep(0.5)  # time for any other read to be sent
                if hub.everyone == everyone:
                    break
            read_again = [name for name, w in watchers.items() if w.requests != requests[name]]
            assert read_again == [services[7]]
            # A registration (a catalog change) is followed too.
            await asyncio.to_thread(fleet.register, [(f"node-{tag}-0", services[9],
                                                      f"{services[9]}-new", "10.0.0.2", 9100)])
            await until(lambda: len(watchers[services[9]].state.snapshot.instances) == 3,
                        "the new instance joined")
        finally:
            for subscription in subscriptions:
                await registry.unsubscribe(subscription)
            await registry.close()
        assert not registry.hubs  # the last watcher's leaving stopped its hub
    try:
        # Bounded, so that anything stuck fails here with the line it was stuck on.
        asyncio.run(asyncio.wait_for(scenario(), 150))
    finally:
        for node in {f"node-{tag}-{n % 20}" for n in range(SERVICES)}:
            consul_client.catalog.deregister(node)


def test_an_agent_refusing_connections_says_which_limit(control_plane, tmp_path):
    """HTTP 429, as an agent answers past limits.http_max_conns_per_client (set low here, so
    that the hub's own three blocking queries reach it)."""
    agent = ConsulAgent(control_plane.assets, tmp_path / "limited",
                        extra_config="limits { http_max_conns_per_client = 2 }")
    agent.start()

    async def scenario() -> None:
        registry = WatcherRegistry(
            {"default": ConsulConnection.from_address("default", agent.address)})
        subscription = registry.subscribe(ServiceQuery("default", "web"), None, lambda: None)
        try:
            await until(lambda: subscription.watch.state.error is not None, "a refusal")
            message = subscription.watch.state.error
            assert "429" in message and "limits.http_max_conns_per_client" in message
        finally:
            await registry.unsubscribe(subscription)
            await registry.close()
    try:
        asyncio.run(asyncio.wait_for(scenario(), 90))
    finally:
        agent.stop()


def test_instances_registered_critical_and_passing_a_moment_later_are_all_followed(
        control_plane, consul_helper, monkeypatch):
    """The registration (a catalog change) makes the watcher read while the instance is still
    critical; its check passes a moment later, between two health listings that never show it
    failing: the read's disagreement with the next listing makes it read again. (The hub's
    pause between listings is widened to 1 s here, so that the moment always falls in it.)"""
    from controller.sources.consul import hub
    monkeypatch.setattr(hub, "MIN_INTERVAL", 1.0)
    tag = uuid.uuid4().hex[:6]
    services = [f"late-{tag}-{n}" for n in range(3)]
    pacer = consul_helper.register(f"pacer-{tag}", f"pacer-{tag}-0")

    async def scenario() -> None:
        registry = WatcherRegistry(
            {"default": ConsulConnection.from_address("default", control_plane.consul_addr)})
        subscriptions = [registry.subscribe(ServiceQuery("default", s), None, lambda: None)
                         for s in services]
        try:
            await until(lambda: all(s.watch.state.snapshot is not None for s in subscriptions),
                        "first reads")
            for n, (service, subscription) in enumerate(zip(services, subscriptions,
                                                            strict=True)):
                watcher = subscription.watch
                # A health listing now (an unrelated check moves), then a pause of 1 s in which
                # the instance registers critical, is read so, and passes.
                await asyncio.to_thread(consul_helper.set_health, pacer, n % 2 == 1)
                await asyncio.sleep(0.1)
                await asyncio.to_thread(consul_helper.register, service, f"{service}-0",
                                        passing=False)
                await until(lambda w=watcher: w.requests >= 2, "read critical")
                await asyncio.to_thread(consul_helper.set_health, f"{service}-0", True)
                await asyncio.sleep(1.5)
            await until(lambda: all(len(s.watch.state.snapshot.instances) == 1
                                    for s in subscriptions), "every instance followed", 10)
        finally:
            for subscription in subscriptions:
                await registry.unsubscribe(subscription)
            await registry.close()
    asyncio.run(asyncio.wait_for(scenario(), 90))
