"""What GitOps tools make of a ShardRing (issue #24), judged by their own code on objects read from
the real control plane: kstatus (sigs.k8s.io/cli-utils, Flux's health checks and kpt) says Current
for a Ready ring, InProgress while it reconciles or waits for its source, and Failed — at once,
with the message — for every cause only a person can fix; Argo CD's health check
(manifests/argocd/…/health.lua, run by gopher-lua as Argo CD runs it) says Healthy, Progressing,
Suspended or Degraded. hack/gitops-health is the small Go program that calls both.

``SHARDRING_RECORD_GITOPS=1`` writes the live objects into the health check's testdata (Argo CD's
layout) with the health they were given, so its health_test.yaml comes from real objects."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from tests.operator_helpers import REPO, quick, service_name, tool, wait_for

pytestmark = pytest.mark.controlplane

ARGOCD = REPO / "manifests" / "argocd" / "resource_customizations" / "shardring.io" / "ShardRing"

# Every cause a ring can be given through the API (the CRD refuses what InvalidSpec would say,
# and the connection settings behind DatacenterNotAllowed and TokenRequired are the operator's:
# tests/unit/test_gitops_conditions.py covers those): ring -> (its spec, the Stalled reason).
STALLED = {
    "unknown-connection": ({"consul": {"connection": "elsewhere"}}, "UnknownConnection"),
    "secret-missing": ({"consul": {"tokenSecretRef": {"name": "absent"}}}, "SecretMissing"),
    "invalid-membership": ({"members": {"identity": "meta:owner"}}, "InvalidMembership"),
    "invalid-filter": ({"filter": "Service.Meta.shard =="}, "InvalidFilter"),
    "too-large": ({"shards": 65536, "replicationFactor": 3,
                   "outputs": {"prometheusRelabel": True}}, "RingTooLarge"),
    "conflict": ({}, "ConfigMapConflict"),
}


@pytest.fixture(scope="session")
def gitops_health() -> Path:
    return tool("gitops-health.sh")


def judge(tool: Path, mode: list[str], objects: list[dict]) -> dict[str, dict]:
    run = subprocess.run([str(tool), *mode], input=json.dumps(objects), capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return {v["name"]: v for v in map(json.loads, run.stdout.splitlines())}


def reason(rings, name: str, kind: str, status: str = "True") -> str | None:
    """The condition's reason while it has ``status`` (None: it does not, or is not there yet)."""
    found = rings.condition(name, kind)
    return found["reason"] if found and found["status"] == status else None


def test_kstatus_and_argo_cd_read_every_state_of_a_ring(
        operator, rings, consul_helper, core_v1, namespace, gitops_health):
    service = service_name()
    for i in range(3):
        consul_helper.register(service, f"{service}-{i}", port=9000 + i)
    core_v1.create_namespaced_config_map(namespace, k8s.V1ConfigMap(
        metadata=k8s.V1ObjectMeta(name="conflict-ring"), data={"mine": "yes"}))
    rings.create("ready", quick(service))
    rings.create("stabilizing", quick(service, stabilization={"window": "300s",
                                                              "maxDelay": "600s"}))
    rings.create("waiting", quick(f"absent-{uuid.uuid4().hex[:6]}"))  # nobody registered yet
    rings.create("paused", quick(service, suspend=True))
    for name, (extra, _) in STALLED.items():
        spec = quick(service)
        if "filter" in extra:
            spec["service"] = {"name": service, "filter": extra["filter"]}
        else:
            spec.update(extra)
        rings.create(name, spec)

    wait_for(lambda: reason(rings, "stabilizing", "Ready") == "Published", "published")
    consul_helper.register(service, f"{service}-3", port=9003)  # waits out its 300 s window
    wait_for(lambda: reason(rings, "stabilizing", "Reconciling") == "Stabilizing", "stabilizing")
    wait_for(lambda: reason(rings, "ready", "Ready") == "Published", "ready")
    wait_for(lambda: reason(rings, "waiting", "Ready", "False") == "NotEnoughMembers",
             "waiting for members")
    wait_for(lambda: reason(rings, "paused", "Ready", "False") == "Suspended", "suspended")
    for name, (_, cause) in STALLED.items():
        wait_for(lambda name=name, cause=cause: reason(rings, name, "Stalled") == cause, cause)

    objects = rings.list()
    kstatus = judge(gitops_health, ["kstatus"], objects)
    argocd = judge(gitops_health, ["argocd", str(ARGOCD)], objects)
    expected = {"ready": ("Current", "Healthy"), "stabilizing": ("InProgress", "Progressing"),
                "waiting": ("InProgress", "Degraded"), "paused": ("InProgress", "Suspended"),
                **{name: ("Failed", "Degraded") for name in STALLED}}
    seen = {name: (kstatus[name]["status"], argocd[name]["status"]) for name in expected}
    assert seen == expected
    for name, (_, cause) in STALLED.items():  # the message says what to fix, in both tools
        message = rings.condition(name, "Stalled")["message"]
        assert message and kstatus[name]["message"] == message
        assert argocd[name]["message"] == f"{cause}: {message}"
    assert "stabilization.window" in kstatus["stabilizing"]["message"]

    if os.environ.get("SHARDRING_RECORD_GITOPS"):
        record(objects, argocd, ["ready", "stabilizing", "waiting", "paused", "secret-missing",
                                 "invalid-filter"])


def record(objects: list[dict], argocd: dict[str, dict], names: list[str]) -> None:
    """The chosen live objects as the health check's testdata, and its health_test.yaml."""
    tests = []
    namespace = objects[0]["metadata"]["namespace"]  # the test's own, named as a user's would be
    objects = json.loads(json.dumps(objects).replace(namespace, "observability"))
    for item in (o for o in objects if o["metadata"]["name"] in names):
        name = item["metadata"]["name"]
        metadata = {k: item["metadata"][k] for k in ("name", "namespace", "generation")}
        document = {"apiVersion": item["apiVersion"], "kind": item["kind"],
                    "metadata": metadata, "spec": item["spec"], "status": item["status"]}
        (ARGOCD / "testdata" / f"{name}.yaml").write_text(yaml.safe_dump(document,
                                                                         sort_keys=False))
        tests.append({"healthStatus": {"status": argocd[name]["status"], "message":
                                       argocd[name]["message"].replace(namespace,
                                                                       "observability")},
                      "inputPath": f"testdata/{name}.yaml"})
    (ARGOCD / "health_test.yaml").write_text(yaml.safe_dump({"tests": tests}, sort_keys=False))


def test_the_argo_cd_health_check_passes_its_own_tests(gitops_health):
    """health_test.yaml (from real objects, see ``record``) as Argo CD's test suite runs it."""
    run = subprocess.run([str(gitops_health), "argocd-test", str(ARGOCD)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    statuses = {line.split()[-1] for line in run.stdout.splitlines() if line.startswith("ok")}
    assert statuses == {"Healthy", "Progressing", "Suspended", "Degraded"}
