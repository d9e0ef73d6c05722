"""manifests/ applies to a real API server; the operator works under its ServiceAccount with
exactly the ClusterRole in manifests/base/rbac.yaml (each rule is needed); two replicas are safe."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests.operator_helpers import (
    OperatorProcess,
    Rings,
    kubectl,
    service_account_kubeconfig,
    wait_for,
)

pytestmark = pytest.mark.controlplane
REPO = Path(__file__).resolve().parents[2]
SYSTEM = "shardring-system"
NAMESPACED = REPO / "manifests" / "namespaced"


@pytest.fixture(scope="module")
def installed(control_plane, api_client):
    kubectl(control_plane, "apply", "-k", str(REPO / "crds"))
    kubectl(control_plane, "wait", "--for", "condition=Established", "--timeout", "30s",
            "crd/shardrings.shardring.io", "crd/clusterkopfpeerings.kopf.dev")
    kubectl(control_plane, "apply", "-k", str(REPO / "manifests"))
    return True


def test_base_and_overlay_apply_with_server_side_validation(control_plane, installed):
    deployment = yaml.safe_load(kubectl(control_plane, "get", "deployment", "-n", SYSTEM,
                                        "shardring-operator", "-o", "yaml"))
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    rendered = kubectl(control_plane, "kustomize", str(REPO / "examples" / "kustomize-overlay"))
    assert "registry.example.com/platform/shardring-operator:0.1.0" in rendered
    # Server-side validation of every object; the overlay's namespace must exist for that.
    subprocess.run([str(control_plane.assets / "kubectl"), "--kubeconfig",
                    str(control_plane.kubeconfig), "create", "namespace", "platform-sharding"],
                   capture_output=True)
    kubectl(control_plane, "apply", "-k", str(REPO / "examples" / "kustomize-overlay"),
            "--dry-run=server")
    kubectl(control_plane, "apply", "-f", str(REPO / "examples" / "networkpolicy.yaml"),
            "--dry-run=server")
    # The namespaced variant and the example that serves two teams pass server-side validation
    # (tests/integration/test_install.py applies the shipped modes for real on a fresh cluster).
    assert "SHARDRING_NAMESPACES" in kubectl(control_plane, "kustomize", str(NAMESPACED))
    kubectl(control_plane, "apply", "-k", str(NAMESPACED), "--dry-run=server")
    for team in ("team-a", "team-b"):
        subprocess.run([str(control_plane.assets / "kubectl"), "--kubeconfig",
                        str(control_plane.kubeconfig), "create", "namespace", team],
                       capture_output=True)
    tenants = REPO / "examples" / "namespaced-tenants"
    rendered = list(yaml.safe_load_all(kubectl(control_plane, "kustomize", str(tenants))))
    bound = sorted(d["metadata"]["namespace"] for d in rendered if d["kind"] == "RoleBinding")
    container = next(d for d in rendered if d["kind"] == "Deployment")[
        "spec"]["template"]["spec"]["containers"][0]
    served = next(e["value"] for e in container["env"] if e["name"] == "SHARDRING_NAMESPACES")
    assert sorted(served.split(",")) == bound  # listed twice, alike, and nothing more
    kubectl(control_plane, "apply", "-k", str(tenants), "--dry-run=server")


@dataclass
class Outcome:
    """What a limited operator got done in ``scenario``, read back from the API server."""
    missing: list[str]  # of "ConfigMap", "status", "events": what did not happen
    status: dict[str, Any]  # the ring's status as last read ({} if never written)
    event_reasons: set[str]  # reasons of the Consul ring's Events
    log: str = ""  # the operator's output
    endpoints_status: dict[str, Any] = field(default_factory=dict)  # the Kubernetes ring's

    def condition(self, kind: str) -> dict[str, Any]:
        return next((c for c in self.status.get("conditions") or [] if c["type"] == kind), {})


def scenario(api_client, core_v1, consul_helper, namespace: str, timeout: float) -> Outcome:
    """A ring with a token Secret is published, follows a failure, reports status and events;
    a second ring follows a Service's endpoints (EndpointSlices)."""
    rings = Rings(api_client, namespace)
    service = f"svc-{uuid.uuid4().hex[:8]}"
    ids = [consul_helper.register(service, f"{service}-{i}", port=9000 + i) for i in range(3)]
    core_v1.create_namespaced_secret(namespace, k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name="consul-acl",
                                  labels={"shardring.io/source-credentials": "true"}),
        string_data={"token": "unused"}))
    k8s.DiscoveryV1Api(api_client).create_namespaced_endpoint_slice(namespace, {
        "metadata": {"name": "pods-a", "labels": {"kubernetes.io/service-name": "pods"}},
        "addressType": "IPv4", "ports": [{"port": 9100}],
        "endpoints": [{"addresses": [f"10.4.0.{i}"], "conditions": {"ready": True}}
                      for i in range(2)]})
    rings.create("rbac", {"service": {"name": service}, "shards": 16,
                          "consul": {"tokenSecretRef": {"name": "consul-acl"}},
                          "stabilization": {"window": "0s", "maxDelay": "0s"}})
    rings.create("pods", {"kubernetes": {"service": "pods"}, "shards": 16})
    missing = []
    try:
        wait_for(lambda: len(rings.ring("rbac-ring").assignment.members) == 3, "ring", timeout)
        consul_helper.set_health(ids[0], passing=False)
        wait_for(lambda: len(rings.ring("rbac-ring").assignment.members) == 2, "follow", 10)
    except AssertionError:
        missing.append("ConfigMap")
    # Once one part was waited out in full, the operator has had all that time for the others:
    # they are looked for once more, not waited for again.
    def then() -> float:
        return 0.5 if missing else 3
    try:
        wait_for(lambda: (rings.condition("rbac", "Ready") or {}).get("status") == "True",
                 "Ready", then() if missing else timeout)
    except AssertionError:
        missing.append("status")
    try:
        wait_for(lambda: [e for e in rings.events("Resharded")
                          if e.involved_object.name == "rbac"], "events", then())
    except AssertionError:
        missing.append("events")
    try:
        wait_for(lambda: len(rings.ring("pods-ring").assignment.members) == 2, "endpoints",
                 then())
    except AssertionError:
        missing.append("endpoints")
    reasons = {e.reason for e in core_v1.list_namespaced_event(namespace).items
               if e.involved_object.name == "rbac"}
    return Outcome(missing, rings.get("rbac").get("status") or {}, reasons,
                   endpoints_status=rings.get("pods").get("status") or {})


def scenario_as(control_plane, kubeconfig, tmp_path, api_client, core_v1, consul_helper,
                namespace, timeout: float, until: str | None = None) -> Outcome:
    """The scenario against an operator process that uses ``kubeconfig``; with ``until``, the
    operator runs on until that text appears in its output (at most two minutes)."""
    operator = OperatorProcess(control_plane, kubeconfig, tmp_path / "operator.log",
                               "--peering", "shardring")
    try:
        outcome = scenario(api_client, core_v1, consul_helper, namespace, timeout=timeout)
        if until:
            wait_for(lambda: until in operator.output(), repr(until), timeout=120, interval=1)
    finally:
        # Not a test of its exit: an operator refused its peering record retries clearing it
        # at exit (kopf's backoffs, half a minute) before it goes.
        operator.stop(grace=5)
    outcome.log = operator.output()
    return outcome


def test_operator_works_under_its_service_account(control_plane, installed, api_client, core_v1,
                                                  consul_helper, namespace, tmp_path):
    config = service_account_kubeconfig(control_plane, core_v1, SYSTEM, "shardring-operator",
                                        tmp_path / "sa.kubeconfig")
    outcome = scenario_as(control_plane, config, tmp_path, api_client, core_v1, consul_helper,
                          namespace, timeout=60)
    output = outcome.log
    assert not outcome.missing, output[-4000:]
    forbidden = [line for line in output.splitlines() if "Forbidden" in line or " 403" in line]
    assert not forbidden, forbidden[:5]


RULES = yaml.safe_load_all((REPO / "manifests" / "base" / "rbac.yaml").read_text())
CLUSTER_ROLE = next(d for d in RULES if d and d["kind"] == "ClusterRole")
EVERYTHING = ["ConfigMap", "status", "events", "endpoints"]


def refused(outcome: Outcome, text: str) -> bool:
    """The API server refused the operator a request, in its own words (``text``; quotes may
    come escaped, as in a logged response body)."""
    return any(text in line and "forbidden" in line
               for line in outcome.log.replace("\\", "").splitlines())


def without_rings_access(outcome: Outcome) -> None:
    # The ring is never even seen: nothing published, no status, no event.
    assert outcome.missing == EVERYTHING and outcome.status == {} and not outcome.event_reasons
    assert refused(outcome, 'cannot list resource "shardrings"')


def without_status_access(outcome: Outcome) -> None:
    # The rings are published and follow their sources, but no status is ever written.
    assert outcome.missing == ["status"] and outcome.status == {}
    assert "Resharded" in outcome.event_reasons
    assert refused(outcome, 'cannot patch resource "shardrings/status"')


def without_configmap_access(outcome: Outcome) -> None:
    # No pass gets as far as reading the ConfigMap: nothing published, no status either.
    assert outcome.missing == EVERYTHING and outcome.status == {}
    assert refused(outcome, 'resource "configmaps"')


def without_secret_access(outcome: Outcome) -> None:
    # The ring's token cannot be read: the status says so, and nothing is published (the ring
    # without a Secret is).
    assert outcome.missing == ["ConfigMap", "status", "events"]
    ready, degraded = outcome.condition("Ready"), outcome.condition("Degraded")
    assert (ready["status"], ready["reason"]) == ("False", "SecretMissing")
    assert (degraded["status"], degraded["reason"]) == ("True", "SecretMissing")
    # The ring's author learns only that the Secret is not usable; the admin's log says why.
    assert "Secret 'consul-acl' cannot serve as this ring's source credentials" in \
        ready["message"]
    assert "Secret" in outcome.log and "is forbidden to the operator (RBAC)" in outcome.log


def without_endpointslice_watch(outcome: Outcome) -> None:
    # The Consul ring is served as ever; the ring that follows a Service's endpoints says why it
    # cannot.
    assert outcome.missing == ["endpoints"]
    reachable = next(c for c in outcome.endpoints_status["conditions"]
                     if c["type"] == "SourceReachable")
    assert reachable["status"] == "False"
    assert "may not list EndpointSlices here (RBAC" in reachable["message"]


def without_events(outcome: Outcome) -> None:
    # Everything works except that no Event at all appears.
    assert outcome.missing == ["events"] and outcome.event_reasons == set()
    assert outcome.condition("Ready")["status"] == "True"
    assert "could not post the Resharded event" in outcome.log


def without_crd_watch(outcome: Outcome) -> None:
    # Rings work (kopf found its resources by discovery at start), but kopf cannot watch CRDs
    # (after its retries, about a minute, it gives up: "Not enough permissions to watch for
    # resources"), so a CRD created, changed or deleted later goes unnoticed until a restart.
    assert outcome.missing == []
    assert refused(outcome, 'cannot list resource "customresourcedefinitions"')


def without_peering(outcome: Outcome) -> None:
    # Without its peering record a replica never becomes active: it serves nothing.
    assert outcome.missing == EVERYTHING and outcome.status == {}
    assert refused(outcome, 'clusterkopfpeerings.kopf.dev "shardring" is forbidden')


def without_finalizers_access(outcome: Outcome) -> None:
    # The admission plugin refuses the ConfigMap (its ownerReference blocks the ring's deletion):
    # nothing is published.
    assert "ConfigMap" in outcome.missing
    assert refused(outcome, "cannot set blockOwnerDeletion")


def without_lease_watch(outcome: Outcome) -> None:
    # Rings are published as ever; only the agents' acknowledgements go unseen (Converged).
    assert outcome.missing == []
    assert refused(outcome, 'cannot list resource "leases"')


CRD_WATCH_REFUSED = "customresourcedefinitions.apiextensions.k8s.io is forbidden"
CONSEQUENCES = {"shardrings": without_rings_access, "shardrings/status": without_status_access,
                "shardrings/finalizers": without_finalizers_access,
                "configmaps": without_configmap_access, "secrets": without_secret_access,
                "events": without_events, "customresourcedefinitions": without_crd_watch,
                "clusterkopfpeerings": without_peering, "leases": without_lease_watch,
                "endpointslices": without_endpointslice_watch}


def test_every_rule_has_a_known_consequence():
    named = [rule["resources"][0] for rule in CLUSTER_ROLE["rules"]]
    assert sorted(named) == sorted(CONSEQUENCES)


@pytest.mark.slow
@pytest.mark.parametrize("dropped", range(len(CLUSTER_ROLE["rules"])),
                         ids=[f"{r['apiGroups'][0] or 'core'}-{r['resources'][0]}"
                              for r in CLUSTER_ROLE["rules"]])
def test_every_rule_is_needed(control_plane, installed, api_client, core_v1, consul_helper,
                              namespace, tmp_path, dropped):
    rbac = k8s.RbacAuthorizationV1Api(api_client)
    name = f"shardring-minus-{dropped}-{uuid.uuid4().hex[:4]}"
    rules = [r for i, r in enumerate(CLUSTER_ROLE["rules"]) if i != dropped]
    consequence = CONSEQUENCES[CLUSTER_ROLE["rules"][dropped]["resources"][0]]
    core_v1.create_namespaced_service_account(namespace, k8s.V1ServiceAccount(
        metadata=k8s.V1ObjectMeta(name="limited")))
    rbac.create_cluster_role({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                              "metadata": {"name": name}, "rules": rules})
    rbac.create_cluster_role_binding({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "limited", "namespace": namespace}]})
    config = service_account_kubeconfig(control_plane, core_v1, namespace, "limited",
                                        tmp_path / "limited.kubeconfig")
    try:
        # 10 s: an unhindered operator publishes in 2-4 s; each missing part waits this out.
        outcome = scenario_as(control_plane, config, tmp_path, api_client, core_v1,
                              consul_helper, namespace, timeout=10,
                              until=CRD_WATCH_REFUSED if consequence is without_crd_watch else None)
    finally:
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)
    try:
        consequence(outcome)
    except AssertionError as error:
        raise AssertionError(f"dropping rule {dropped} had not the expected consequence: "
                             f"{outcome.missing}, {outcome.status}, {outcome.event_reasons}\n"
                             f"{outcome.log[-3000:]}") from error


def scrape(port: int) -> dict[str, float]:
    from controller.testing.scrape import scrape as scrape_url
    return scrape_url(f"http://127.0.0.1:{port}/metrics")


@pytest.mark.slow
def test_two_replicas_one_active_and_the_standby_takes_over(
        control_plane, installed, api_client, core_v1, consul_helper, namespace, tmp_path, report):
    from controller.testing.controlplane import free_port
    rings = Rings(api_client, namespace)
    service = f"svc-{uuid.uuid4().hex[:8]}"
    ids = [consul_helper.register(service, f"{service}-{i}", port=9000 + i) for i in range(5)]
    ports = {"active": free_port(), "standby": free_port()}
    writes = f'shardring_configmap_writes_total{{namespace="{namespace}",ring="ha"}}'

    def replica(role: str, priority: int) -> OperatorProcess:
        return OperatorProcess(control_plane, control_plane.kubeconfig, tmp_path / f"{role}.log",
                               "--peering", "shardring", "--priority", str(priority),
                               "--metrics-port", str(ports[role]))

    def served(role: str) -> bool:
        try:
            return "shardring_consul_queries_active" in scrape(ports[role])
        except OSError:
            return False

    def peers() -> dict:
        return k8s.CustomObjectsApi(api_client).get_cluster_custom_object(
            "kopf.dev", "v1", "clusterkopfpeerings", "shardring").get("status") or {}

    def peer_priorities() -> list[int]:
        return [peer.get("priority") for peer in peers().values() if isinstance(peer, dict)]
    active = replica("active", 200)
    standby = None
    try:
        rings.create("ha", {"service": {"name": service}, "shards": 16,
                            "members": {"identity": "id"},
                            "stabilization": {"window": "0s", "maxDelay": "0s"}})
        before = rings.wait_ring("ha-ring", lambda r: len(r.assignment.members) == 5, "ring",
                                 timeout=60)
        # The second replica joins a running one (as in a rolling Deployment): it stands by.
        standby = replica("standby", 100)
        # It is up (its startup ran: metrics are served) and has joined the peering, where a
        # replica starts paused until it finds no peer above it.
        wait_for(lambda: 100 in peer_priorities(), "the standby to join the peering", timeout=60)
        wait_for(lambda: served("standby"), "the standby's metrics")
        # A change while both run: the active replica publishes it, the standby does nothing.
        consul_helper.set_health(ids[0], passing=False)
        during = rings.wait_ring("ha-ring", lambda r: len(r.assignment.members) == 4,
                                 "the active replica to publish the change", timeout=30)
        assert during.version == before.version + 1
        wait_for(lambda: "ConfigMap ha-ring updated" in active.output(), "the active's log")
        assert scrape(ports["active"])[writes] == 2  # created, then updated
        # Paused all along, the standby has not even seen a ring (of any namespace), let alone
        # queried Consul or written.
        standby_metrics = scrape(ports["standby"])
        assert standby_metrics["shardring_consul_queries_active"] == 0
        assert not [k for k in standby_metrics if k.startswith(("shardring_rings{", writes))]
        assert "ConfigMap ha-ring" not in standby.output()
        # The active replica dies; the standby resumes and takes over.
        active.stop(signal.SIGKILL)
        killed = time.monotonic()
        consul_helper.set_health(ids[1], passing=False)
        try:
            after = rings.wait_ring("ha-ring", lambda r: len(r.assignment.members) == 3,
                                    "the standby to take over", timeout=60)
        except AssertionError:  # (seen once in ~40 runs: what each replica saw, to tell why)
            print(f"peers at {time.time():.0f}: {peers()}")
            print(f"standby's log:\n{standby.output()[-6000:]}")
            raise
        took = time.monotonic() - killed
        report(f"standby took over and published {took:.1f} s after the active was killed")
        assert after.version == during.version + 1
        assert after.assignment.moved_from(during.assignment) == during.assignment.loads[ids[1]]
        assert "Resuming operations after the pause" in standby.output()
        # (Its log line follows the write the test already saw: wait for it, as for the active.)
        wait_for(lambda: "ConfigMap ha-ring updated" in standby.output(), "the standby's log")
        assert scrape(ports["standby"])[writes] == 1
    finally:
        active.stop(signal.SIGKILL)
        if standby is not None:
            standby.stop()


# ---- namespaced mode: what the operator may do ends at its namespaces ---------------------------

def test_namespaced_mode_serves_its_namespaces_and_the_api_server_refuses_it_the_rest(
        control_plane, installed, api_client, core_v1, consul_helper, namespace, tmp_path):
    from kubernetes import config as k8s_config
    account = f"ns-mode-{uuid.uuid4().hex[:6]}"
    other = f"t-other-{uuid.uuid4().hex[:6]}"
    core_v1.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=other)))
    core_v1.create_namespaced_secret(other, k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name="elsewhere",
                                  labels={"shardring.io/source-credentials": "true"}),
        string_data={"token": "not-yours"}))
    # The shipped namespaced RBAC, for a ServiceAccount of this test, serving `namespace` only
    # (its ClusterRole renamed: the shared control plane's install is cluster-wide).
    rendered = [d for d in yaml.safe_load_all(kubectl(control_plane, "kustomize", str(NAMESPACED)))
                if d and d["kind"] in ("ClusterRole", "RoleBinding")]
    cluster_role = next(d for d in rendered if d["kind"] == "ClusterRole" and
                        d["metadata"]["name"] == "shardring-operator")
    cluster_role["metadata"]["name"] = f"{account}-cluster"
    binding = next(d for d in rendered if d["kind"] == "RoleBinding")
    binding["metadata"]["namespace"] = namespace
    documents = [d for d in rendered if d["kind"] == "ClusterRole"] + [binding, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": f"{account}-cluster"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": f"{account}-cluster"},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": SYSTEM}]}]
    for document in documents:
        for subject in document.get("subjects") or []:
            subject["name"] = account
    core_v1.create_namespaced_service_account(SYSTEM, k8s.V1ServiceAccount(
        metadata=k8s.V1ObjectMeta(name=account)))
    manifest = tmp_path / "namespaced.yaml"
    manifest.write_text(yaml.safe_dump_all(documents))
    kubectl(control_plane, "apply", "-f", str(manifest))
    config = service_account_kubeconfig(control_plane, core_v1, SYSTEM, account,
                                        tmp_path / "ns.kubeconfig")
    rings_elsewhere = Rings(api_client, other)
    try:
        rings_elsewhere.create("unserved", {"service": {"name": "anything"}, "shards": 4})
        operator = OperatorProcess(control_plane, config, tmp_path / "operator.log",
                                   "--peering", "shardring", "--namespace", namespace)
        try:
            outcome = scenario(api_client, core_v1, consul_helper, namespace, timeout=60)
        finally:
            operator.stop()
        log = operator.output()
        assert not outcome.missing, log[-4000:]
        assert not [line for line in log.splitlines() if "forbidden" in line.lower()]
        assert rings_elsewhere.get("unserved").get("status") is None  # not its namespace

        # The API server's own 403s for the operator's identity anywhere else.
        as_operator = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(config)))
        assert as_operator.read_namespaced_secret("consul-acl", namespace).data
        attempts = {
            "read a Secret elsewhere": lambda: as_operator.read_namespaced_secret("elsewhere",
                                                                                 other),
            "read kube-system's Secrets": lambda: as_operator.list_namespaced_secret(
                "kube-system"),
            "list Secrets cluster-wide": lambda: as_operator.list_secret_for_all_namespaces(),
            "write a ConfigMap elsewhere": lambda: as_operator.create_namespaced_config_map(
                other, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="planted"))),
            "write a ConfigMap in kube-system": lambda: as_operator.create_namespaced_config_map(
                "kube-system", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="planted"))),
        }
        for what, attempt in attempts.items():
            with pytest.raises(k8s.ApiException) as refusal:
                attempt()
            assert refusal.value.status == 403, what
    finally:
        rbac = k8s.RbacAuthorizationV1Api(api_client)
        rbac.delete_cluster_role_binding(f"{account}-cluster")
        rbac.delete_cluster_role(f"{account}-cluster")
        core_v1.delete_namespaced_service_account(account, SYSTEM)
        core_v1.delete_namespace(other)
