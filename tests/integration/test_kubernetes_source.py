"""Members from Kubernetes itself: the endpoints of a Service, from its EndpointSlices, on the real
API server — slices written as the endpointslice controller writes them, and slices written by
kube-controller-manager's own endpointslice controller for real Pods."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from kubernetes import client as k8s

from tests.operator_helpers import wait_for

pytestmark = pytest.mark.controlplane


@pytest.fixture
def k8s_operator(crd, operator_env):
    from tests.inprocess import InProcessOperator
    with InProcessOperator() as memo:
        yield memo


@pytest.fixture
def discovery(api_client) -> k8s.DiscoveryV1Api:
    return k8s.DiscoveryV1Api(api_client)


def endpoint(pod: str, address: str, *, ready: bool | None = True, serving: bool | None = None,
             terminating: bool | None = None, zone: str | None = None) -> dict:
    conditions = {k: v for k, v in (("ready", ready), ("serving", serving),
                                    ("terminating", terminating)) if v is not None}
    found = {"addresses": [address], "conditions": conditions,
             "targetRef": {"kind": "Pod", "name": pod, "namespace": "x"}}
    if zone:
        found["zone"] = zone
    return found


def write_slice(discovery, namespace: str, service: str, name: str, endpoints: list[dict],
                ports: list[dict] | None = None) -> None:
    """As the endpointslice controller writes one (create, or replace)."""
    body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": ports if ports is not None else [{"name": "metrics", "port": 9100,
                                                        "protocol": "TCP"}]}
    try:
        current = discovery.read_namespaced_endpoint_slice(name, namespace)
    except k8s.ApiException as error:
        if error.status != 404:
            raise
        discovery.create_namespaced_endpoint_slice(namespace, body)
    else:
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        discovery.replace_namespaced_endpoint_slice(name, namespace, body)


def k8s_ring(service: str, **extra) -> dict:
    return {"kubernetes": {"service": service, **extra}, "shards": 32,
            "stabilization": {"window": "0s", "maxDelay": "0s"}}


def members(rings, configmap: str):
    ring = rings.ring(configmap)
    return tuple(ring.assignment.ids) if ring else None


def test_ready_endpoints_are_members_and_a_terminating_one_drains_before_it_goes(
        k8s_operator, rings, discovery, namespace):
    service = f"web-{uuid.uuid4().hex[:6]}"
    write_slice(discovery, namespace, service, f"{service}-a", [
        endpoint("web-0", "10.1.0.10", zone="z1"), endpoint("web-1", "10.1.0.11", zone="z2")])
    write_slice(discovery, namespace, service, f"{service}-b", [
        endpoint("web-2", "10.1.0.12", ready=None, zone="z1"),  # nil: ready, as the API says
        endpoint("web-3", "10.1.0.13", ready=False)])  # not ready: not a member
    write_slice(discovery, namespace, "other", "other-a", [endpoint("x-0", "10.1.9.9")])
    rings.create("kube", k8s_ring(service, port="metrics") |
                 {"members": {"zoneFrom": "node-meta:zone"}})
    first = wait_for(lambda: (r := rings.ring("kube-ring")) and
                     tuple(r.assignment.ids) == ("web-0", "web-1", "web-2") and r,
                     "three members", timeout=15)
    assert first.endpoints["web-1"].address == "10.1.0.11"
    assert first.endpoints["web-1"].port == 9100
    assert {m.id: m.zone for m in first.assignment.members} == \
        {"web-0": "z1", "web-1": "z2", "web-2": "z1"}
    assert first.service == {"source": "kubernetes", "namespace": namespace,
                             "service": service, "port": "metrics", "identity": "node/id",
                             "zoneFrom": "node-meta:zone"}
    wait_for(lambda: (rings.get("kube").get("status") or {}).get("source") ==
             f"kubernetes:{service}", "status.source")
    wait_for(lambda: (rings.condition("kube", "SourceReachable") or {}).get("status") == "True",
             "SourceReachable")

    # web-1's Pod is deleted: terminating, still serving. It drains: its shards move, and it
    # stays listed (serving them until the new owners have them).
    write_slice(discovery, namespace, service, f"{service}-a", [
        endpoint("web-0", "10.1.0.10", zone="z1"),
        endpoint("web-1", "10.1.0.11", ready=False, serving=True, terminating=True, zone="z2")])
    draining = wait_for(lambda: (r := rings.ring("kube-ring")) and r.draining == ("web-1",)
                        and r, "web-1 draining")
    assert draining.assignment.ids == ["web-0", "web-2"]
    moved = [s for s, owners in enumerate(first.assignment.owners)
             if owners != draining.assignment.owners[s]]
    assert moved and all("web-1" in first.assignment.owners[s] for s in moved)
    # Gone from the slice: nothing moves any more.
    write_slice(discovery, namespace, service, f"{service}-a",
                [endpoint("web-0", "10.1.0.10", zone="z1")])
    gone = wait_for(lambda: (r := rings.ring("kube-ring")) and not r.draining and r, "gone")
    assert gone.assignment.owners == draining.assignment.owners
    # A slice deleted takes its endpoints with it.
    discovery.delete_namespaced_endpoint_slice(f"{service}-b", namespace)
    wait_for(lambda: members(rings, "kube-ring") == ("web-0",), "web-2 gone with its slice")


def test_a_watch_that_ends_on_time_resumes_without_listing_again(
        k8s_operator, rings, discovery, namespace, monkeypatch):
    from controller.sources.kubernetes import api, watch
    monkeypatch.setattr(api, "WATCH_SECONDS", 1)  # the server ends each watch after 1 s
    monkeypatch.setattr(watch, "MIN_WATCH", 0.0)
    service = f"resume-{uuid.uuid4().hex[:6]}"
    write_slice(discovery, namespace, service, f"{service}-a", [endpoint("r-0", "10.6.0.1")])
    rings.create("resume", k8s_ring(service))
    wait_for(lambda: members(rings, "resume-ring") == ("r-0",), "published")
    (watcher,) = [w for w in k8s_operator.sources.registries["kubernetes"].watchers.values()
                  if w.query.service == service]
    import time
    time.sleep(4)  # several watches end and resume meanwhile
    write_slice(discovery, namespace, service, f"{service}-a",
                [endpoint("r-0", "10.6.0.1"), endpoint("r-1", "10.6.0.2")])
    wait_for(lambda: members(rings, "resume-ring") == ("r-0", "r-1"), "a change followed")
    assert watcher.lists == 1  # resumed each time from the last version, never listed again


def test_a_service_with_several_ports_needs_one_named(k8s_operator, rings, discovery, namespace):
    service = f"multi-{uuid.uuid4().hex[:6]}"
    ports = [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9100}]
    write_slice(discovery, namespace, service, f"{service}-a",
                [endpoint("m-0", "10.2.0.1")], ports=ports)
    rings.create("multi", k8s_ring(service))
    ready = wait_for(lambda: (c := rings.condition("multi", "Ready")) and
                     c.get("reason") == "InvalidMembership" and c, "InvalidMembership")
    assert "several ports: set spec.kubernetes.port" in ready["message"]
    rings.patch("multi", {"kubernetes": {"port": 8080}})
    ring = wait_for(lambda: rings.ring("multi-ring"), "published once the port is named")
    assert ring.endpoints["m-0"].port == 8080


def test_pods_made_ready_are_followed_through_kube_controller_managers_endpointslices(
        k8s_operator, rings, core_v1, namespace):
    """No kubelet runs here: the test plays its part (a Node, Pods bound to it, their status
    Running and Ready); the endpointslice controller of kube-controller-manager does the rest."""
    node = f"node-{uuid.uuid4().hex[:6]}"
    core_v1.create_node(k8s.V1Node(metadata=k8s.V1ObjectMeta(
        name=node, labels={"topology.kubernetes.io/zone": "zone-a"})))
    try:
        core_v1.create_namespaced_service(namespace, k8s.V1Service(
            metadata=k8s.V1ObjectMeta(name="scrapers"),
            spec=k8s.V1ServiceSpec(selector={"app": "scraper"}, cluster_ip="None",
                                   ports=[k8s.V1ServicePort(name="metrics", port=9100)])))
        for i in range(3):
            start_pod(core_v1, namespace, f"scraper-{i}", node, f"10.3.0.{i + 1}")
        rings.create("pods", k8s_ring("scrapers") | {"members": {"zoneFrom": "node-meta:zone"}})
        ring = wait_for(lambda: (r := rings.ring("pods-ring")) and len(r.assignment.ids) == 3
                        and r, "three Pods", timeout=60)
        assert ring.assignment.ids == ["scraper-0", "scraper-1", "scraper-2"]
        assert {m.zone for m in ring.assignment.members} == {"zone-a"}
        assert ring.endpoints["scraper-2"].address == "10.3.0.3"
        core_v1.delete_namespaced_pod("scraper-1", namespace, grace_period_seconds=0)
        wait_for(lambda: members(rings, "pods-ring") == ("scraper-0", "scraper-2"),
                 "a deleted Pod leaves", timeout=60)
    finally:
        core_v1.delete_node(node)


def start_pod(core_v1, namespace: str, name: str, node: str, ip: str) -> None:
    core_v1.create_namespaced_pod(namespace, k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name, labels={"app": "scraper"}),
        spec=k8s.V1PodSpec(node_name=node, containers=[k8s.V1Container(
            name="c", image="scraper", ports=[k8s.V1ContainerPort(name="metrics",
                                                                  container_port=9100)])])))
    now = "2026-01-01T00:00:00Z"
    core_v1.patch_namespaced_pod_status(name, namespace, {"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "10.3.255.1",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now},
                       {"type": "ContainersReady", "status": "True",
                        "lastTransitionTime": now}]}})


class SilentProxy:
    """A TCP relay to the API server that can go silent without closing anything: a network
    partition, as a client sees one (no reset, no answer)."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.silent = False
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while self.silent:  # a new connection gets no answer while partitioned
            await asyncio.sleep(0.05)
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        await asyncio.gather(self._pump(reader, upstream_writer),
                             self._pump(upstream_reader, writer), return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 16):
                while self.silent:  # held, not delivered: the connection stays open
                    await asyncio.sleep(0.05)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def test_a_watch_on_a_connection_gone_silent_is_noticed_and_followed_again(
        api_client, discovery, namespace, monkeypatch):
    """A partition resets nothing: the watch would wait for its read timeout. The API server
    sends a bookmark every minute, so a watch silent for longer (here 1 s) is ended and
    resumed, and a resume that cannot connect reports the outage."""
    import dataclasses
    from urllib.parse import urlparse

    from controller.sources.kubernetes import api
    from controller.sources.kubernetes.query import KubernetesQuery
    from controller.sources.kubernetes.watch import KubernetesRegistry
    monkeypatch.setattr(api, "QUIET", 1.0)
    monkeypatch.setattr(api, "REQUEST_TIMEOUT", 2.0)
    service = f"silent-{uuid.uuid4().hex[:6]}"
    write_slice(discovery, namespace, service, f"{service}-a", [endpoint("s-0", "10.7.0.1")])

    async def until(check, what: str, timeout: float = 15.0) -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while not check():
            assert loop.time() - started < timeout, what
            await asyncio.sleep(0.05)
        return loop.time() - started

    async def scenario() -> None:
        target = urlparse(api_client.configuration.host)
        proxy = SilentProxy(target.hostname, target.port)
        port = await proxy.start()
        connection = dataclasses.replace(api.connection_from_client(api_client.configuration),
                                         host=f"https://127.0.0.1:{port}")
        registry = KubernetesRegistry(connection=connection)
        subscription = registry.subscribe(KubernetesQuery(namespace, service), None, lambda: None)
        watcher = subscription.watch
        try:
            await until(lambda: watcher.state.snapshot is not None, "first listing")
            proxy.silent = True
            took = await until(lambda: watcher.state.error is not None, "outage noticed")
            assert "cannot be reached" in watcher.state.error and took < 10
            proxy.silent = False
            await until(lambda: watcher.state.error is None, "followed again")
            await asyncio.to_thread(write_slice, discovery, namespace, service, f"{service}-a",
                                    [endpoint("s-0", "10.7.0.1"), endpoint("s-1", "10.7.0.2")])
            await until(lambda: len(watcher.state.snapshot.instances) == 2, "a change followed")
        finally:
            await registry.unsubscribe(subscription)
            await registry.close()
            proxy.close()
    asyncio.run(scenario())
