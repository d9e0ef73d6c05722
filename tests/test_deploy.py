"""manifests/ applies to a real API server; the operator works under its ServiceAccount with
exactly the ClusterRole in manifests/rbac.yaml (each rule is needed); two replicas are safe."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from tests.operator_helpers import Rings, kubectl, subprocess_env, wait_for

pytestmark = pytest.mark.controlplane
REPO = Path(__file__).resolve().parents[1]
SYSTEM = "shardring-system"


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


def service_account_kubeconfig(control_plane, core_v1, namespace: str, account: str,
                               path: Path) -> Path:
    token = core_v1.create_namespaced_service_account_token(
        account, namespace, k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))).status.token
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    config["users"] = [{"name": "admin", "user": {"token": token}}]
    path.write_text(yaml.safe_dump(config))
    return path


class OperatorProcess:
    def __init__(self, control_plane, kubeconfig: Path, log: Path, *args: str):
        env = subprocess_env(control_plane, kubeconfig)
        self.log = log
        self.process = subprocess.Popen([sys.executable, "-m", "controller", "run", *args],
                                        cwd=REPO, env=env, stdout=open(log, "wb"),
                                        stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def scenario(api_client, core_v1, consul_helper, namespace: str, timeout: float) -> list[str]:
    """A ring with a token Secret is published, follows a failure, reports status and events.
    Returns what did not happen (empty: everything worked)."""
    rings = Rings(api_client, namespace)
    service = f"svc-{uuid.uuid4().hex[:8]}"
    ids = [consul_helper.register(service, f"{service}-{i}", port=9000 + i) for i in range(3)]
    core_v1.create_namespaced_secret(namespace, k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name="consul-acl"), string_data={"token": "unused"}))
    rings.create("rbac", {"service": {"name": service}, "shards": 16,
                          "consul": {"tokenSecretRef": {"name": "consul-acl"}},
                          "stabilization": {"window": "0s", "maxDelay": "0s"}})
    missing = []
    try:
        wait_for(lambda: len(rings.ring("rbac-ring").assignment.members) == 3, "ring", timeout)
        consul_helper.set_health(ids[0], passing=False)
        wait_for(lambda: len(rings.ring("rbac-ring").assignment.members) == 2, "follow", 10)
    except AssertionError:
        missing.append("ConfigMap")
    try:
        wait_for(lambda: (rings.condition("rbac", "Ready") or {}).get("status") == "True",
                 "Ready", 5 if missing else timeout)
    except AssertionError:
        missing.append("status")
    try:
        wait_for(lambda: rings.events("Resharded"), "events", 5)
    except AssertionError:
        missing.append("events")
    return missing


def scenario_as(control_plane, kubeconfig, tmp_path, api_client, core_v1, consul_helper,
                namespace, timeout: float) -> tuple[list[str], str]:
    """The scenario against an operator process that uses ``kubeconfig``: (what is missing,
    the operator's output)."""
    operator = OperatorProcess(control_plane, kubeconfig, tmp_path / "operator.log",
                               "--peering", "shardring")
    try:
        missing = scenario(api_client, core_v1, consul_helper, namespace, timeout=timeout)
    finally:
        operator.stop()
    return missing, operator.output()


def test_operator_works_under_its_service_account(control_plane, installed, api_client, core_v1,
                                                  consul_helper, namespace, tmp_path):
    config = service_account_kubeconfig(control_plane, core_v1, SYSTEM, "shardring-operator",
                                        tmp_path / "sa.kubeconfig")
    missing, output = scenario_as(control_plane, config, tmp_path, api_client, core_v1,
                                  consul_helper, namespace, timeout=60)
    assert not missing, output[-4000:]
    forbidden = [line for line in output.splitlines() if "Forbidden" in line or " 403" in line]
    assert not forbidden, forbidden[:5]


RULES = yaml.safe_load_all((REPO / "manifests" / "rbac.yaml").read_text())
CLUSTER_ROLE = next(d for d in RULES if d and d["kind"] == "ClusterRole")


@pytest.mark.slow
@pytest.mark.parametrize("dropped", range(len(CLUSTER_ROLE["rules"])),
                         ids=[f"{r['apiGroups'][0] or 'core'}-{r['resources'][0]}"
                              for r in CLUSTER_ROLE["rules"]])
def test_every_rule_is_needed(control_plane, installed, api_client, core_v1, consul_helper,
                              namespace, tmp_path, dropped):
    rbac = k8s.RbacAuthorizationV1Api(api_client)
    name = f"shardring-minus-{dropped}-{uuid.uuid4().hex[:4]}"
    rules = [r for i, r in enumerate(CLUSTER_ROLE["rules"]) if i != dropped]
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
        missing, text = scenario_as(control_plane, config, tmp_path, api_client, core_v1,
                                    consul_helper, namespace, timeout=20)
    finally:
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)
    permission_error = "forbidden" in text.lower() or "(RBAC)" in text
    assert missing or permission_error, f"rule {dropped} looks unnecessary:\n{text[-3000:]}"
    assert permission_error, f"rule {dropped}: {missing} failed without a clear permission error"


@pytest.mark.slow
def test_two_replicas_one_active_and_the_standby_takes_over(
        control_plane, installed, api_client, core_v1, consul_helper, namespace, tmp_path, report):
    rings = Rings(api_client, namespace)
    service = f"svc-{uuid.uuid4().hex[:8]}"
    ids = [consul_helper.register(service, f"{service}-{i}", port=9000 + i) for i in range(4)]
    active = OperatorProcess(control_plane, control_plane.kubeconfig, tmp_path / "active.log",
                             "--peering", "shardring", "--priority", "200")
    standby = None
    try:
        rings.create("ha", {"service": {"name": service}, "shards": 16,
                            "stabilization": {"window": "0s", "maxDelay": "0s"}})
        before = rings.wait_ring("ha-ring", lambda r: len(r.assignment.members) == 4, "ring",
                                 timeout=60)
        # The second replica joins a running one (as in a rolling Deployment): it stands by.
        standby = OperatorProcess(control_plane, control_plane.kubeconfig,
                                  tmp_path / "standby.log", "--peering", "shardring",
                                  "--priority", "100")
        time.sleep(5)
        assert "ConfigMap ha-ring created" in active.output()
        assert "ConfigMap ha-ring" not in standby.output()
        active.stop(signal.SIGKILL)
        killed = time.monotonic()
        consul_helper.set_health(ids[0], passing=False)
        after = rings.wait_ring("ha-ring", lambda r: len(r.assignment.members) == 3,
                                "the standby to take over", timeout=60)
        took = time.monotonic() - killed
        report(f"standby took over and published {took:.1f} s after the active was killed")
        assert after.assignment.moved_from(before.assignment) == before.assignment.loads[ids[0]]
        assert "ConfigMap ha-ring updated" in standby.output()
    finally:
        active.stop(signal.SIGKILL)
        if standby is not None:
            standby.stop()
