"""The control plane is real: a CRD gets established, ConfigMaps round-trip, Consul blocks and
wakes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

pytestmark = pytest.mark.controlplane
CRD = Path(__file__).resolve().parents[2] / "crds" / "shardrings.shardring.io.yaml"


def test_crd_from_crds_dir_becomes_established(api_client):
    extensions = k8s.ApiextensionsV1Api(api_client)
    body = yaml.safe_load(CRD.read_text())
    try:
        extensions.create_custom_resource_definition(body)
    except k8s.ApiException as error:
        assert error.status == 409  # another test already applied it
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        crd = extensions.read_custom_resource_definition(body["metadata"]["name"])
        conditions = {c.type: c.status for c in (crd.status.conditions or [])}
        if conditions.get("Established") == "True":
            break
        time.sleep(0.2)
    assert conditions.get("Established") == "True"
    assert conditions.get("NamesAccepted") == "True"
    # The API server now serves the new kind: a list call succeeds.
    k8s.CustomObjectsApi(api_client).list_namespaced_custom_object(
        "shardring.io", "v1alpha1", "default", "shardrings")


def test_configmap_create_patch_read(core_v1, namespace):
    core_v1.create_namespaced_config_map(namespace, k8s.V1ConfigMap(
        metadata=k8s.V1ObjectMeta(name="smoke"), data={"a": "1"}))
    patched = core_v1.patch_namespaced_config_map("smoke", namespace, {"data": {"b": "2"}})
    read = core_v1.read_namespaced_config_map("smoke", namespace)
    assert read.data == {"a": "1", "b": "2"}
    assert read.metadata.resource_version == patched.metadata.resource_version
    assert int(read.metadata.resource_version) > 0


def test_rbac_is_enforced(api_client, control_plane, namespace):
    """An unprivileged token is refused: authorization is really RBAC, not AlwaysAllow."""
    core = k8s.CoreV1Api(api_client)
    core.create_namespaced_service_account(namespace, k8s.V1ServiceAccount(
        metadata=k8s.V1ObjectMeta(name="nobody")))
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=600))).status.token
    configuration = k8s.Configuration()
    configuration.host = control_plane.api_url
    configuration.verify_ssl = False
    configuration.api_key = {"authorization": f"Bearer {token}"}
    with pytest.raises(k8s.ApiException) as refused:
        k8s.CoreV1Api(k8s.ApiClient(configuration)).list_namespaced_config_map(namespace)
    assert refused.value.status == 403


def test_consul_blocking_query_wakes_up_when_an_instance_fails(consul_client, consul_helper):
    for i in range(3):
        consul_helper.register("smoke-svc", f"smoke-{i}", port=9000 + i)
    index, nodes = consul_client.health.service("smoke-svc", passing=True)
    assert len(nodes) == 3
    result: dict = {}

    def block():
        started = time.monotonic()
        result["index"], result["nodes"] = consul_client.health.service(
            "smoke-svc", passing=True, index=index, wait="20s")
        result["waited"] = time.monotonic() - started

    watcher = threading.Thread(target=block)
    watcher.start()
    time.sleep(0.5)
    assert watcher.is_alive(), "the blocking query returned before anything changed"
    consul_helper.set_health("smoke-1", passing=False)
    watcher.join(10)
    assert not watcher.is_alive()
    assert int(result["index"]) > int(index)
    assert sorted(n["Service"]["ID"] for n in result["nodes"]) == ["smoke-0", "smoke-2"]
    assert result["waited"] < 5


def test_catalog_fleet_registers_and_flips_health_in_transactions(consul_client):
    """The benchmarks' fleet: instances on external nodes, health set through transactions; a
    flip must wake a blocking query exactly as an agent check does."""
    from controller.testing.consul_helpers import CatalogFleet
    fleet = CatalogFleet(consul_client)
    ids = fleet.register([(f"fleet-node-{i % 2}", "fleet-smoke", f"fleet-smoke-{i}",
                           f"10.9.0.{i}", 9100) for i in range(70)])  # more than one batch
    try:
        index, nodes = consul_client.health.service("fleet-smoke", passing=True)
        assert sorted(n["Service"]["ID"] for n in nodes) == sorted(ids)
        assert {n["Service"]["Address"] for n in nodes} == {f"10.9.0.{i}" for i in range(70)}
        result: dict = {}
        watcher = threading.Thread(target=lambda: result.update(zip(
            ("index", "nodes"), consul_client.health.service(
                "fleet-smoke", passing=True, index=index, wait="20s"), strict=True)))
        watcher.start()
        time.sleep(0.5)
        assert watcher.is_alive(), "the blocking query returned before anything changed"
        fleet.set_health({"fleet-smoke-3": False, "fleet-smoke-65": False})
        watcher.join(10)
        assert not watcher.is_alive()
        assert sorted(n["Service"]["ID"] for n in result["nodes"]) == \
            sorted(set(ids) - {"fleet-smoke-3", "fleet-smoke-65"})
        fleet.set_health({"fleet-smoke-3": True})
        _, nodes = consul_client.health.service("fleet-smoke", passing=True)
        assert len(nodes) == 69
    finally:
        for node in ("fleet-node-0", "fleet-node-1"):
            consul_client.catalog.deregister(node)
