"""Bad input, drift and guards on the real control plane: clear errors, nothing lost."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from kubernetes import client as k8s

from tests.operator_helpers import quick, service_name, wait_for

pytestmark = pytest.mark.controlplane


# ---- refused at apply time by the CRD schema ----------------------------------------------------

BAD_SPECS = [
    ({"shards": 0}, "spec.shards"),
    ({"shards": 65537}, "spec.shards"),
    ({"shards": "many"}, "spec.shards"),
    ({"replicationFactor": 0}, "spec.replicationFactor"),
    ({"replicationFactor": 6}, "spec.replicationFactor"),
    ({"algorithm": "modulo"}, "spec.algorithm"),
    ({"virtualNodes": 100}, "spec.virtualNodes"),
    ({"algorithm": "consistent", "virtualNodes": 0}, "spec.virtualNodes"),
    ({"stabilization": {"window": "10 seconds"}}, "spec.stabilization.window"),
    ({"stabilization": {"window": "1m", "maxDelay": "10s"}}, "maxDelay must be at least window"),
    ({"stabilization": {"maxMemberLossPercent": 101}}, "spec.stabilization.maxMemberLossPercent"),
    ({"stabilization": {"minMembers": -1}}, "spec.stabilization.minMembers"),
    ({"members": {"identity": "ip"}}, "spec.members.identity"),
    ({"members": {"weightFrom": "meta:"}}, "spec.members.weightFrom"),
    ({"members": {"zoneFrom": "zone"}}, "spec.members.zoneFrom"),
    ({"configMap": {"name": "Bad_Name"}}, "spec.configMap.name"),
    ({"consul": {"connection": "http://consul:8500"}}, "spec.consul.connection"),
    ({"consul": {"tokenSecretRef": {"key": "token"}}}, "spec.consul.tokenSecretRef.name"),
    ({"service": {"name": ""}}, "spec.service.name"),
    ({"service": {"name": "has space"}}, "spec.service.name"),
    ({"service": {"name": "s", "tags": "scraper"}}, "spec.service.tags"),
    ({"service": {"name": "s", "onlyPassing": "yes"}}, "spec.service.onlyPassing"),
    ({"service": None}, "spec.service"),
]


@pytest.mark.parametrize("spec,field", BAD_SPECS, ids=[f for _, f in BAD_SPECS])
def test_bad_spec_is_refused_at_apply_with_the_field_named(rings, crd, spec, field):
    body = {"service": {"name": "svc"}, **spec}
    if body["service"] is None:
        del body["service"]
    with pytest.raises(k8s.ApiException) as refused:
        rings.create(f"bad-{uuid.uuid4().hex[:6]}", body)
    assert refused.value.status == 422
    assert field in refused.value.body, refused.value.body


# ---- semantically bad specs: Degraded, previous ConfigMap untouched, no hot loop -----------------

SEMANTIC = [
    ({"consul": {"connection": "elsewhere"}}, "UnknownConnection", "elsewhere"),
    ({"consul": {"tokenSecretRef": {"name": "absent"}}}, "SecretMissing", "absent"),
    ({"consul": {"tokenSecretRef": {"name": "consul-acl", "key": "nope"}}}, "SecretMissing",
     "hold the key 'nope'"),
    ({"service": {"name": "does-not-exist-anywhere"}}, "NotEnoughMembers", "0 healthy"),
    ({"members": {"identity": "meta:owner"}}, "InvalidMembership", "meta:owner"),
    ({"members": {"weightFrom": "meta:weight"}}, "InvalidMembership", "not a number"),
    ({"replicationFactor": 5}, "NotEnoughMembers", "replicationFactor"),
]


@pytest.mark.parametrize("patch,reason,words", SEMANTIC, ids=[r for _, r, _ in SEMANTIC])
def test_semantically_bad_spec_degrades_and_keeps_the_last_ring(
        operator, rings, consul_helper, core_v1, namespace, patch, reason, words):
    service = service_name()
    for i in range(3):
        consul_helper.register(service, f"{service}-{i}", port=9000 + i,
                               meta={"weight": "heavy"})
    core_v1.create_namespaced_secret(namespace, k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name="consul-acl"), string_data={"token": "irrelevant"}))
    rings.create("victim", quick(service))
    rings.wait_ring("victim-ring", lambda r: len(r.assignment.members) == 3, "the first ring")
    before = rings.configmap("victim-ring")
    spec = quick(service)
    for key, value in patch.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    rings.patch("victim", spec)
    degraded = wait_for(lambda: (lambda c: c if c and c["status"] == "True" else None)(
        rings.condition("victim", "Degraded")), f"Degraded {reason}")
    assert degraded["reason"] == reason and words in degraded["message"]
    ready = rings.condition("victim", "Ready")
    assert ready["status"] == "False" and ready["reason"] == reason
    worker = operator.workers[(namespace, "victim")]
    passes = worker.passes
    time.sleep(2)
    assert worker.passes - passes <= 3, "a bad spec must not be retried in a hot loop"
    after = rings.configmap("victim-ring")
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.data == before.data
    # Every other ring is still served.
    other = service_name()
    consul_helper.register(other, f"{other}-0", port=9500)
    rings.create("bystander", quick(other))
    rings.wait_ring("bystander-ring", lambda r: len(r.assignment.members) == 1, "another ring")
    assert any(e.reason == reason and e.type == "Warning" for e in rings.events(reason))


# ---- drift, conflicts, guards --------------------------------------------------------------------

def test_hand_edited_or_deleted_configmap_is_restored(operator, rings, consul_helper, core_v1,
                                                      namespace, report):
    service = service_name()
    for i in range(3):
        consul_helper.register(service, f"{service}-{i}", port=9000 + i)
    rings.create("drift", quick(service))
    ring = rings.wait_ring("drift-ring", lambda r: len(r.assignment.members) == 3, "ring")
    original = rings.configmap("drift-ring").data
    core_v1.patch_namespaced_config_map("drift-ring", namespace,
                                        {"data": {"ring.json": "{}", "extra": "x"}})
    started = time.monotonic()
    wait_for(lambda: rings.configmap("drift-ring").data == original, "the edit to be undone",
             timeout=10)
    edit_restored = time.monotonic() - started
    core_v1.delete_namespaced_config_map("drift-ring", namespace)
    started = time.monotonic()
    restored = wait_for(lambda: rings.configmap("drift-ring"), "the ConfigMap to come back",
                        timeout=10)
    assert restored.data == original
    assert rings.ring("drift-ring").version == ring.version  # same ring, same version
    report(f"drift restored in {edit_restored:.2f} s (edit), {time.monotonic() - started:.2f} s "
          f"(delete)")
    # Edits that still parse: the assignment under the published ringHash, another ring's file.
    document = json.loads(original["ring.json"])
    for edit in ({"assignment": [[0]] * len(document["assignment"])},
                 {"ring": {"namespace": namespace, "name": "bystander"}}):
        core_v1.patch_namespaced_config_map("drift-ring", namespace, {"data": {
            "ring.json": json.dumps({**document, **edit}, sort_keys=True)}})
        wait_for(lambda: rings.configmap("drift-ring").data == original,
                 f"the edit of {next(iter(edit))} to be undone", timeout=10)
    assert rings.ring("drift-ring").version == ring.version


def test_an_unowned_configmap_is_never_adopted(operator, rings, consul_helper, core_v1,
                                               namespace):
    service = service_name()
    consul_helper.register(service, f"{service}-0", port=9000)
    core_v1.create_namespaced_config_map(namespace, k8s.V1ConfigMap(
        metadata=k8s.V1ObjectMeta(name="mine"), data={"precious": "yes"}))
    rings.create("grabby", quick(service, configMap={"name": "mine"}))
    degraded = wait_for(lambda: (lambda c: c if c and c["status"] == "True" else None)(
        rings.condition("grabby", "Degraded")), "ConfigMapConflict")
    assert degraded["reason"] == "ConfigMapConflict"
    time.sleep(1)
    assert rings.configmap("mine").data == {"precious": "yes"}
    assert not rings.configmap("mine").metadata.owner_references


def test_all_instances_failing_keeps_the_last_ring(operator, rings, consul_helper):
    service = service_name()
    ids = [consul_helper.register(service, f"{service}-{i}", port=9000 + i) for i in range(4)]
    # The default window (10 s, here 2 s) gathers failures that arrive one by one into one change.
    rings.create("outage", quick(service, stabilization={"window": "2s", "maxDelay": "10s"}))
    ring = rings.wait_ring("outage-ring", lambda r: len(r.assignment.members) == 4, "ring")
    for instance in ids:
        consul_helper.set_health(instance, passing=False)
    degraded = wait_for(lambda: (lambda c: c if c and c["status"] == "True" else None)(
        rings.condition("outage", "Degraded")), "Degraded")
    assert degraded["reason"] in ("NotEnoughMembers", "MemberLoss")
    assert rings.ring("outage-ring").hash == ring.hash
    for instance in ids:
        consul_helper.set_health(instance, passing=True)
    wait_for(lambda: (rings.condition("outage", "Degraded") or {}).get("status") == "False",
             "recovery")
    assert rings.ring("outage-ring").hash == ring.hash  # the same members: nothing moved


def test_a_ring_too_large_for_a_configmap_keeps_the_previous_one(operator, rings, consul_helper):
    service = service_name()
    for i in range(5):
        consul_helper.register(service, f"{service}-{i}", port=9000 + i)
    rings.create("huge", quick(service))
    rings.wait_ring("huge-ring", lambda r: len(r.assignment.members) == 5, "ring")
    before = rings.configmap("huge-ring")
    rings.patch("huge", {"shards": 65536, "replicationFactor": 5,
                         "outputs": {"prometheusRelabel": True}})
    degraded = wait_for(lambda: (lambda c: c if c and c["status"] == "True" else None)(
        rings.condition("huge", "Degraded")), "RingTooLarge")
    assert degraded["reason"] == "RingTooLarge" and "prometheusRelabel" in degraded["message"]
    assert rings.configmap("huge-ring").data == before.data
