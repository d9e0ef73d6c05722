"""Consul membership as Consul is really used, on the real agent and control plane: default
registrations on many nodes, health as Consul aggregates it, filter expressions, and a namespace
deleted under its rings."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator

import consul
import pytest
import yaml
from kubernetes import client as k8s

from tests.operator_helpers import CRD, Rings, apply_crd, quick, service_name, wait_for

pytestmark = pytest.mark.controlplane


class CatalogNodes:
    """Instances on nodes of their own, written through the catalog the way a sync tool or a
    fleet of agents would: registered without a service ID, each has the service name as ID."""

    def __init__(self, client: consul.Consul):
        self.client = client
        self.nodes: list[str] = []

    def register(self, node: str, service: str, port: int, status: str = "passing",
                 service_id: str | None = None) -> None:
        definition = {"Service": service, "Port": port, "Address": "127.0.0.1"}
        if service_id:
            definition["ID"] = service_id
        check = {"CheckID": f"health:{service}", "Name": "health", "Status": status,
                 "ServiceID": service_id or service}
        self.client.catalog.register(node, "127.0.0.1", service=definition, check=check)
        if node not in self.nodes:
            self.nodes.append(node)

    def cleanup(self) -> None:
        for node in self.nodes:
            self.client.catalog.deregister(node)


@pytest.fixture
def catalog(consul_client) -> Iterator[CatalogNodes]:
    nodes = CatalogNodes(consul_client)
    yield nodes
    nodes.cleanup()


def member_ids(rings: Rings, configmap: str) -> list[str]:
    return [m.id for m in rings.ring(configmap).assignment.members]


def test_a_service_registered_on_many_nodes_without_ids_makes_a_ring(operator, rings, catalog):
    service, tag = service_name(), uuid.uuid4().hex[:6]
    nodes = [f"node-{tag}-{n}" for n in range(3)]
    for port, node in enumerate(nodes, 9000):
        catalog.register(node, service, port)
    rings.create("plain", quick(service))  # the default identity
    expected = sorted(f"{node}/{service}" for node in nodes)
    wait_for(lambda: member_ids(rings, "plain-ring") == expected, "a ring of node/id members")
    wait_for(lambda: (rings.condition("plain", "Ready") or {}).get("status") == "True", "Ready")
    version = rings.ring("plain-ring").version  # the status may still be on its way

    # Re-registering an instance (an agent restart does this) gives it the same identity.
    catalog.client.catalog.deregister(nodes[0], service_id=service)
    wait_for(lambda: len(member_ids(rings, "plain-ring")) == 2, "the instance gone")
    catalog.register(nodes[0], service, 9000)
    back = rings.wait_ring("plain-ring", lambda r: [m.id for m in r.assignment.members] ==
                           expected, "the same identity back")
    assert back.version == version + 2

    # A true collision under an explicit rule is still refused, clearly, with nothing published.
    rings.create("by-id", quick(service, members={"identity": "id"}))
    degraded = wait_for(lambda: (c := rings.condition("by-id", "Degraded")) and
                        c["status"] == "True" and c, "InvalidMembership")
    assert degraded["reason"] == "InvalidMembership"
    assert f"two instances share identity {service!r}" in degraded["message"]
    assert "node/id" in degraded["message"] and nodes[0] in degraded["message"]
    with pytest.raises(k8s.ApiException) as missing:
        rings.configmap("by-id-ring")
    assert missing.value.status == 404


def register_weighted(client: consul.Consul, service: str, instance: str, port: int) -> str:
    client.agent.service.register(service, service_id=instance, address="127.0.0.1", port=port,
                                  check=consul.Check.ttl("1h"),
                                  weights={"passing": 10, "warning": 3})
    client.agent.check.ttl_pass(f"service:{instance}")
    return instance


def test_only_passing_false_counts_warning_never_critical_or_maintenance(operator, rings,
                                                                          consul_client):
    service = service_name()
    a, b, c, d = (register_weighted(consul_client, service, f"{service}-{x}", 9100 + n)
                  for n, x in enumerate("abcd"))
    try:
        consul_client.agent.check.ttl_warn(f"service:{b}")
        consul_client.agent.check.ttl_fail(f"service:{c}")
        rings.create("lenient", {**quick(service), "members": {"identity": "id",
                                                               "weightFrom": "weights"},
                                 "service": {"name": service, "onlyPassing": False}})
        rings.create("strict", quick(service, members={"identity": "id"}))
        def weights() -> dict[str, float]:
            document = json.loads(rings.configmap("lenient-ring").data["ring.json"])
            return {m["id"]: m["weight"] for m in document["members"]}

        # The agent syncs check updates to the catalog a moment after they are made.
        wait_for(lambda: weights() == {a: 10, b: 3, d: 10}, "warning counts, weighing Warning")
        wait_for(lambda: member_ids(rings, "strict-ring") == [a, d], "passing only")

        consul_client.agent.service.maintenance(d, "true", reason="test")
        wait_for(lambda: member_ids(rings, "lenient-ring") == [a, b], "maintenance leaves")
        consul_client.agent.service.maintenance(d, "false")
        consul_client.agent.check.ttl_pass(f"service:{b}")
        wait_for(lambda: weights() == {a: 10, b: 10, d: 10}, "back, passing")
        assert rings.condition("lenient", "Ready")["status"] == "True"
    finally:
        for instance in (a, b, c, d):
            consul_client.agent.service.deregister(instance)


def test_filter_expressions_select_members_share_watchers_and_report_errors(
        operator, rings, consul_helper, namespace):
    service = service_name()
    for n, shard in enumerate(["yes", "no", "yes", "no", "yes"]):
        consul_helper.register(service, f"{service}-{n}", port=9200 + n, meta={"shard": shard})
    expression = 'Service.Meta.shard == "yes"'
    chosen = [f"{service}-{n}" for n in (0, 2, 4)]
    for name in ("first", "second"):
        rings.create(name, {**quick(service), "members": {"identity": "id"},
                            "service": {"name": service, "filter": expression}})
    for name in ("first", "second"):
        wait_for(lambda name=name: member_ids(rings, f"{name}-ring") == chosen, "filtered")
    document = json.loads(rings.configmap("first-ring").data["ring.json"])
    assert document["service"]["filter"] == expression
    consul = operator.sources.registries["consul"]
    watchers = [w for w in consul.watchers.values() if w.key.query.service == service]
    assert len(watchers) == 1 and len(watchers[0].subscribers) == 2

    # A change the expression selects is followed; one it does not select is not a member.
    consul_helper.register(service, f"{service}-5", port=9205, meta={"shard": "yes"})
    consul_helper.register(service, f"{service}-6", port=9206, meta={"shard": "no"})
    for name in ("first", "second"):  # both, so "before" below is second's settled version
        wait_for(lambda name=name: member_ids(rings, f"{name}-ring") == chosen + [f"{service}-5"],
                 "followed")

    # An expression Consul refuses: Degraded with Consul's own words, the ring kept, no hot loop.
    before = rings.configmap("second-ring")
    rings.patch("second", {"service": {"name": service, "filter": "Service.Meta.shard =="}})
    degraded = wait_for(lambda: (c := rings.condition("second", "Degraded")) and
                        c["reason"] == "InvalidFilter" and c, "InvalidFilter")
    assert degraded["status"] == "True" and "Consul refused the query" in degraded["message"]
    assert len(degraded["message"]) > len("Consul refused the query: ") + 10  # Consul's words
    reachable = rings.condition("second", "ConsulReachable")
    assert (reachable["status"], reachable["reason"]) == ("True", "QueryRefused")
    bad = [w for w in operator.sources.registries["consul"].watchers.values()
           if w.key.query.filter == "Service.Meta.shard =="]
    assert len(bad) == 1
    worker = operator.workers[(namespace, "second")]
    passes, requests = worker.passes, bad[0].requests
    time.sleep(6)
    assert worker.passes - passes <= 3, "a refused filter must not loop"
    # Backoff doubles from 0.25 s: at most ~6 refused queries in 6 s, not 120 (one per 50 ms).
    assert bad[0].requests - requests <= 8
    assert rings.configmap("second-ring").metadata.resource_version == \
        before.metadata.resource_version
    assert rings.condition("first", "Ready")["status"] == "True"  # the other ring is served

    rings.patch("second", {"service": {"name": service, "filter": expression}})
    wait_for(lambda: rings.condition("second", "Ready")["status"] == "True", "fixed")
    wait_for(lambda: member_ids(rings, "second-ring") == chosen + [f"{service}-5"], "followed")


def test_a_datacenter_consul_does_not_know_is_the_specs_to_fix_not_an_outage(
        operator, rings, consul_helper):
    service = service_name()
    consul_helper.register(service, f"{service}-0", port=9300)
    rings.create("remote", {**quick(service),
                            "service": {"name": service, "datacenter": "dc-typo"}})
    degraded = wait_for(lambda: (c := rings.condition("remote", "Degraded")) and
                        c["reason"] == "InvalidQuery" and c, "InvalidQuery", 30)
    assert "Consul knows no datacenter 'dc-typo' (it knows '" in degraded["message"]
    reachable = rings.condition("remote", "SourceReachable")
    assert (reachable["status"], reachable["reason"]) == ("True", "QueryRefused")
    rings.patch("remote", {"service": {"name": service, "datacenter": None}})  # the agent's own
    wait_for(lambda: rings.condition("remote", "Ready")["status"] == "True", "fixed", 30)


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_deleting_a_namespace_with_ready_rings_is_quiet(operator, api_client, core_v1,
                                                        consul_helper):
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    core_v1.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    rings = Rings(api_client, namespace)
    service = service_name()
    for n in range(3):
        consul_helper.register(service, f"{service}-{n}", port=9300 + n)
    names = [f"ring-{n}" for n in range(3)]
    for name in names:
        rings.create(name, quick(service))
    for name in names:
        wait_for(lambda name=name: (rings.condition(name, "Ready") or {}).get("status") == "True",
                 f"{name} Ready")
    captured, root = Captured(), logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(captured)
    try:
        core_v1.delete_namespace(namespace)
        # The namespace controller deletes its content in no fixed order; the ConfigMaps going
        # before their rings is the case that used to make the operator recreate them.
        for name in names:
            core_v1.delete_namespaced_config_map(f"{name}-ring", namespace)

        def gone() -> bool:
            try:
                core_v1.read_namespace(namespace)
            except k8s.ApiException as error:
                return error.status == 404
            return False
        wait_for(gone, "the namespace deleted", timeout=90)
        time.sleep(1)  # anything the workers would still log
    finally:
        root.removeHandler(captured)
        root.setLevel(level)
    # Other tests' namespaces may be going away meanwhile: only this namespace's records count.
    ours = [r for r in captured.records if namespace in r.getMessage() or
            (getattr(r, "k8s_ref", None) or {}).get("namespace") == namespace]
    text = "\n".join(f"{r.levelname} {r.name} {r.getMessage()}" for r in ours)
    assert ours, "nothing was logged about the namespace at all"
    assert not [r for r in ours if r.exc_info], text
    assert not [r for r in ours if r.levelno >= logging.WARNING], text
    assert "Will escalate" not in text
    assert "Forbidden" not in text and "reconcile failed" not in text
    for name in names:
        lines = [r for r in ours if f"{namespace}/{name}]" in r.getMessage() and
                 ("being deleted" in r.getMessage() or "was deleted" in r.getMessage())]
        assert len(lines) == 1, text  # a deletion is one line, as an outage is
    assert not [key for key in operator.workers if key[0] == namespace]


def create_under_default(rings: Rings, name: str, service: str, identity: str) -> None:
    """Create a ring without an identity once the API server defaults it to ``identity`` (a CRD
    update reaches the API server's handlers a moment after it is written)."""
    def created() -> bool:
        rings.create(name, quick(service))
        if rings.get(name)["spec"]["members"]["identity"] == identity:
            return True
        rings.delete(name)
        wait_for(lambda: name not in [i["metadata"]["name"] for i in rings.list()], "deleted")
        return False
    wait_for(created, f"a ring defaulted to {identity}", interval=0.5)


def test_rings_created_under_the_old_default_keep_id(operator, api_client, rings, consul_helper):
    """Upgrading the CRD from the `id` default: stored rings carry `identity: id` and keep it."""
    service = service_name()
    ids = [consul_helper.register(service, f"{service}-{n}", port=9400 + n) for n in range(3)]
    old = yaml.safe_load(CRD.read_text())
    members = old["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]["members"]["properties"]
    members["identity"]["default"] = "id"
    extensions = k8s.ApiextensionsV1Api(api_client)
    current = extensions.read_custom_resource_definition(old["metadata"]["name"])
    old["metadata"]["resourceVersion"] = current.metadata.resource_version
    extensions.replace_custom_resource_definition(old["metadata"]["name"], old)
    try:
        create_under_default(rings, "legacy", service, "id")
        wait_for(lambda: member_ids(rings, "legacy-ring") == sorted(ids), "published with id")
    finally:
        apply_crd(api_client)
    published = rings.configmap("legacy-ring").metadata.resource_version
    create_under_default(rings, "fresh", service, "node/id")
    wait_for(lambda: len(member_ids(rings, "fresh-ring")) == 3, "the new default published")
    # Under the new CRD and operator the stored identity stays, and re-evaluating the ring (a spec
    # change that does not touch membership) keeps it exactly as published.
    assert rings.get("legacy")["spec"]["members"]["identity"] == "id"
    rings.patch("legacy", {"stabilization": {"window": "0s", "maxDelay": "1s"}})
    wait_for(lambda: (ring := rings.get("legacy"))["status"].get("observedGeneration") ==
             ring["metadata"]["generation"], "the change evaluated")
    assert rings.configmap("legacy-ring").metadata.resource_version == published
    assert member_ids(rings, "legacy-ring") == sorted(ids)


def test_a_member_tagged_draining_gives_up_its_shards_and_leaves_without_a_move(
        operator, rings, consul_helper):
    service = service_name()
    ids = [consul_helper.register(service, f"{service}-{n}", port=9300 + n) for n in range(4)]
    rings.create("drained", quick(service, members={"identity": "id",
                                                    "drainFrom": "tag:draining"}))
    first = wait_for(lambda: (r := rings.ring("drained-ring")) and
                     len(r.assignment.members) == 4 and r, "four members")
    leaving = ids[1]
    held = {s for s, owners in enumerate(first.assignment.owners) if leaving in owners}
    # The instance re-registers itself with the tag (as a drain hook would), still passing.
    consul_helper.register(service, leaving, port=9301, tags=["draining"])
    drained = wait_for(lambda: (r := rings.ring("drained-ring")) and r.draining and r,
                       "draining published")
    assert drained.draining == (leaving,) and leaving not in drained.assignment.ids
    changed = {s for s, (a, b) in enumerate(zip(first.assignment.owners,
                                                drained.assignment.owners, strict=True)) if a != b}
    assert changed == held
    wait_for(lambda: rings.get("drained").get("status", {}).get("draining") == [leaving],
             "status.draining")
    consul_helper.deregister(leaving)
    gone = wait_for(lambda: (r := rings.ring("drained-ring")) and not r.draining and r,
                    "the drained member gone")
    assert gone.assignment.owners == drained.assignment.owners  # nothing moved
    wait_for(lambda: "draining" not in rings.get("drained").get("status", {}),
             "status.draining cleared")
