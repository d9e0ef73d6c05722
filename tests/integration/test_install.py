"""Install, switch modes and uninstall exactly as the README says, on a control plane of this
module's own (uninstalling deletes the CRDs, which every other test needs): each shipped install
mode applies on a fresh cluster; cluster-wide -> namespaced takes the cluster-wide grant away;
uninstalling with the operator gone, or deleting the CRDs under a running operator, never hangs."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import consul
import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from controller.testing import ControlPlane
from controller.testing.consul_helpers import ConsulHelper
from tests.operator_helpers import OperatorProcess, Rings, service_account_kubeconfig, wait_for

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
SYSTEM = "shardring-system"
ACCOUNT = f"system:serviceaccount:{SYSTEM}:shardring-operator"
KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"  # what earlier versions left on rings


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    with ControlPlane() as started:
        yield started


def kubectl(plane: ControlPlane, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([str(plane.assets / "kubectl"), "--kubeconfig", str(plane.kubeconfig),
                           *args], capture_output=True, text=True, timeout=timeout)


def ok(plane: ControlPlane, *args: str, timeout: float = 90) -> str:
    result = kubectl(plane, *args, timeout=timeout)
    if result.returncode != 0 and args[0] == "delete":  # what is left, to tell why
        left = kubectl(plane, "get", "crd,namespace", "-o", "yaml").stdout
        pytest.fail(f"kubectl {' '.join(args)}: {result.stderr}\n{left[-4000:]}")
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def applied(plane: ControlPlane, path: Path) -> None:
    """``kubectl apply -k``, then until the new kinds are served: a CRD deleted before its storage
    is ready can stay Terminating ("could not list instances: storage is (re)initializing")."""
    ok(plane, "apply", "-k", str(path))
    wait_for(lambda: kubectl(plane, "get", "shardrings,clusterkopfpeerings", "-A").returncode
             == 0, "the CRDs served", 60)


def can_i(plane: ControlPlane, *args: str) -> bool:
    answer = kubectl(plane, "auth", "can-i", "--as", ACCOUNT, *args).stdout.strip()
    assert answer in ("yes", "no"), answer
    return answer == "yes"


def operator(plane: ControlPlane, tmp_path: Path, *args: str) -> OperatorProcess:
    """The operator as the Deployment would run it: as the shipped ServiceAccount."""
    api = k8s_config.new_client_from_config(config_file=str(plane.kubeconfig))
    config = service_account_kubeconfig(plane, k8s.CoreV1Api(api), SYSTEM, "shardring-operator",
                                        tmp_path / f"sa-{uuid.uuid4().hex[:6]}.kubeconfig")
    return OperatorProcess(plane, config, tmp_path / f"operator-{uuid.uuid4().hex[:6]}.log",
                           "--peering", "shardring", *args)


def stop(running: OperatorProcess) -> str:
    running.stop()
    return running.output()


def published_ring(plane: ControlPlane, namespace: str, name: str, service: str) -> Rings:
    api = k8s_config.new_client_from_config(config_file=str(plane.kubeconfig))
    rings = Rings(api, namespace)
    rings.create(name, {"service": {"name": service}, "shards": 8,
                        "stabilization": {"window": "0s", "maxDelay": "0s"}})
    wait_for(lambda: len(rings.ring(f"{name}-ring").assignment.members) == 2, "published", 60)
    return rings


def register(plane: ControlPlane, service: str) -> ConsulHelper:
    host, port = plane.consul_addr.rsplit(":", 1)
    helper = ConsulHelper(consul.Consul(host=host, port=int(port)))
    for i in range(2):
        helper.register(service, f"{service}-{i}", port=9000 + i)
    return helper


def gone(plane: ControlPlane, *args: str) -> bool:
    return "NotFound" in kubectl(plane, "get", *args).stderr


def test_each_install_mode_applies_on_a_fresh_cluster_and_uninstalls(plane):
    for mode in ("manifests/namespaced", "manifests"):
        applied(plane, REPO / mode)
        ok(plane, "delete", "-k", str(REPO / mode), "--timeout=90s", timeout=120)
        assert gone(plane, "crd", "shardrings.shardring.io")
        assert gone(plane, "namespace", SYSTEM)
    # Uninstalling beside other kopf operators keeps their peering CRD (docs/install.md).
    applied(plane, REPO / "manifests")
    rendered = ok(plane, "kustomize", str(REPO / "manifests"))
    result = subprocess.run([str(plane.assets / "kubectl"), "--kubeconfig", str(plane.kubeconfig),
                             "delete", "-f", "-", "--ignore-not-found", "--timeout=90s",
                             "--selector", "app.kubernetes.io/name!=kopf-peering"],
                            input=rendered, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert gone(plane, "crd", "shardrings.shardring.io")
    assert not gone(plane, "crd", "clusterkopfpeerings.kopf.dev")
    ok(plane, "delete", "-k", str(REPO / "crds"), "--ignore-not-found")


def test_cluster_wide_to_namespaced_then_uninstall_with_the_operator_stopped(plane, tmp_path):
    applied(plane, REPO / "manifests")
    assert can_i(plane, "list", "secrets", "--all-namespaces")
    assert can_i(plane, "create", "configmaps", "-n", "kube-system")

    ok(plane, "apply", "-k", str(REPO / "manifests" / "namespaced"))
    assert not can_i(plane, "list", "secrets", "--all-namespaces")
    assert not can_i(plane, "get", "secrets", "-n", "kube-system")
    assert not can_i(plane, "create", "configmaps", "-n", "default")
    assert can_i(plane, "get", "secrets", "-n", SYSTEM)  # the namespace it serves as shipped
    assert can_i(plane, "create", "configmaps", "-n", SYSTEM)
    assert can_i(plane, "watch", "endpointslices.discovery.k8s.io", "-n", SYSTEM)
    assert not can_i(plane, "watch", "endpointslices.discovery.k8s.io", "-n", "default")

    # Serving its namespace under the namespaced grant, as the Deployment runs it.
    service = f"svc-{uuid.uuid4().hex[:6]}"
    helper = register(plane, service)
    running = operator(plane, tmp_path, "--namespace", SYSTEM)
    try:
        rings = published_ring(plane, SYSTEM, "served", service)
        assert KOPF_FINALIZER not in (rings.get("served")["metadata"].get("finalizers") or [])
        # A Service's endpoints, under the namespaced grant too.
        k8s.DiscoveryV1Api(rings.custom.api_client).create_namespaced_endpoint_slice(SYSTEM, {
            "metadata": {"name": "pods-a", "labels": {"kubernetes.io/service-name": "pods"}},
            "addressType": "IPv4", "ports": [{"port": 9100}],
            "endpoints": [{"addresses": ["10.5.0.1"], "conditions": {"ready": True}}]})
        rings.create("pods", {"kubernetes": {"service": "pods"}, "shards": 8})
        wait_for(lambda: len(rings.ring("pods-ring").assignment.members) == 1, "endpoints", 30)
    finally:
        log = stop(running)
        helper.cleanup()
    assert "forbidden" not in log.lower(), log[-3000:]

    # Uninstall with the operator gone: nothing waits for it.
    started = time.monotonic()
    ok(plane, "delete", "-k", str(REPO / "manifests" / "namespaced"), "--timeout=90s",
       timeout=120)
    assert gone(plane, "crd", "shardrings.shardring.io")
    assert time.monotonic() - started < 60


def test_a_ring_left_with_a_finalizer_by_an_older_version_is_released_and_crds_delete(
        plane, tmp_path):
    applied(plane, REPO / "manifests")
    namespace = f"t-{uuid.uuid4().hex[:6]}"
    ok(plane, "create", "namespace", namespace)
    api = k8s_config.new_client_from_config(config_file=str(plane.kubeconfig))
    rings = Rings(api, namespace)
    rings.create("legacy", {"service": {"name": "none"}, "shards": 4})
    k8s.CustomObjectsApi(api).patch_namespaced_custom_object(
        "shardring.io", "v1alpha1", namespace, "shardrings", "legacy",
        {"metadata": {"finalizers": [KOPF_FINALIZER]}})
    service = f"svc-{uuid.uuid4().hex[:6]}"
    helper = register(plane, service)
    running = operator(plane, tmp_path)
    try:
        published_ring(plane, namespace, "fresh", service)
        wait_for(lambda: not rings.get("legacy")["metadata"].get("finalizers"),
                 "the old finalizer removed", 30)
        # The CRDs deleted under the running operator: their rings go, nothing hangs.
        ok(plane, "delete", "-k", str(REPO / "crds"), "--timeout=60s", timeout=90)
    finally:
        log = stop(running)
        helper.cleanup()
    assert "Traceback" not in log, log[-3000:]
    ok(plane, "delete", "-k", str(REPO / "manifests"), "--ignore-not-found", "--timeout=90s",
       timeout=120)
