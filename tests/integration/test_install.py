"""Install, switch modes and uninstall exactly as the README says, on a control plane of this
module's own (uninstalling deletes the CRDs, which every other test needs): each shipped install
mode applies on a fresh cluster; cluster-wide -> namespaced takes the cluster-wide grant away;
uninstalling with the operator gone, or deleting the CRDs under a running operator, never hangs."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import consul
import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from controller.testing import ControlPlane
from controller.testing.consul_helpers import ConsulHelper
from tests.operator_helpers import (
    OperatorProcess,
    Rings,
    service_account_kubeconfig,
    tool,
    wait_for,
)

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


def bind(plane: ControlPlane, namespace: str) -> None:
    """The RoleBinding examples/namespaced-tenants gives each namespace it serves."""
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "shardring-operator", "namespace": namespace},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "shardring-operator-namespace"},
               "subjects": [{"kind": "ServiceAccount", "name": "shardring-operator",
                             "namespace": SYSTEM}]}
    result = subprocess.run([str(plane.assets / "kubectl"), "--kubeconfig",
                             str(plane.kubeconfig), "apply", "-f", "-"],
                            input=yaml.safe_dump(binding), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


def test_a_served_namespace_without_its_rolebinding_is_said_once_and_the_others_are_served(
        plane, tmp_path):
    applied(plane, REPO / "manifests" / "namespaced")
    prefix = f"ten-{uuid.uuid4().hex[:4]}"
    bound, unbound = f"{prefix}-a", f"{prefix}-c"
    for namespace in (bound, unbound):
        ok(plane, "create", "namespace", namespace)
    bind(plane, bound)
    service = f"svc-{uuid.uuid4().hex[:6]}"
    helper = register(plane, service)
    running = operator(plane, tmp_path, "--namespace", f"{prefix}-*")
    try:
        published_ring(plane, bound, "served", service)  # not held up by the other namespace
        api = k8s_config.new_client_from_config(config_file=str(plane.kubeconfig))
        waiting = Rings(api, unbound)
        waiting.create("waiting", {"service": {"name": service}, "shards": 8})
        wait_for(lambda: f"namespace {unbound} is to be served" in running.output(),
                 "the refusal said", 30)
        time.sleep(5)  # kopf would be retrying its refused watches by now: it is not asked to
        assert running.process.poll() is None
        assert not waiting.get("waiting").get("status")
        bind(plane, unbound)  # onboarded: served without a restart
        wait_for(lambda: len(waiting.ring("waiting-ring").assignment.members) == 2,
                 "published once allowed", 60)
    finally:
        log = stop(running)
        helper.cleanup()
    assert log.count(f"namespace {unbound} is to be served") == 1, log[-3000:]
    assert f"namespace {unbound}: the operator is allowed there now" in log, log[-3000:]
    assert "Request attempt" not in log and "Traceback" not in log, log[-3000:]
    ok(plane, "delete", "-k", str(REPO / "manifests" / "namespaced"), "--timeout=90s",
       timeout=120)


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
        # A ring that never published (its ConfigMap's name is taken): nothing it holds would
        # show it gone, and once the way is clear it would publish.
        rings.create("intruder", {"service": {"name": service}, "shards": 4,
                                  "configMap": {"name": "fresh-ring"},
                                  "stabilization": {"window": "0s", "maxDelay": "0s"}})
        wait_for(lambda: (rings.condition("intruder", "Ready") or {}).get("reason") ==
                 "ConfigMapConflict", "the intruder refused", 30)
        # The CRDs deleted under the running operator: their rings go, nothing hangs. No
        # deletion event comes for a ring whose CRD went, and its ConfigMap goes when the
        # garbage collector gets to it (as here, by hand: the collector may take its time, or
        # never, once it cannot map the owner's kind): its worker must not put it back, again
        # and again.
        ok(plane, "delete", "-k", str(REPO / "crds"), "--timeout=60s", timeout=90)
        # (Retired either way: by the deletion event, when the watch still delivers it, or,
        # when none comes, by reading its ring once kopf stops watching.)
        wait_for(lambda: any(f"[{namespace}/intruder] the ShardRing {what}" in running.output()
                             for what in ("is gone", "was deleted")),
                 "the never-published ring's worker retired", 30)
        core = k8s.CoreV1Api(api)
        try:
            core.delete_namespaced_config_map("fresh-ring", namespace)
        except k8s.ApiException as error:
            assert error.status == 404  # (collected already)
        time.sleep(5)
        assert not core.list_namespaced_config_map(
            namespace, label_selector="app.kubernetes.io/managed-by=shardring-operator").items
    finally:
        log = stop(running)
        helper.cleanup()
    assert "Traceback" not in log, log[-3000:]
    assert log.count("ConfigMap fresh-ring created") == 1, log[-3000:]
    ok(plane, "delete", "-k", str(REPO / "manifests"), "--ignore-not-found", "--timeout=90s",
       timeout=120)


# ---- the Helm chart (charts/shardring-operator) --------------------------------------------

CHART = REPO / "charts" / "shardring-operator"
VALUES = {  # the values files a platform team would write, by name
    "defaults": {},
    "namespaced": {"installMode": "namespaced", "namespaces": ["team-a", "team-b"],
                   "replicas": 1},
    "monitored": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kp"}},
                              "podMonitor": {"enabled": True},
                              "prometheusRule": {"enabled": True,
                                                 "runbookBaseURL": "https://docs.example"}},
                  "limits": {"maxMembers": 5000, "maxRingWork": 64000000,
                             "minPublishInterval": 0.5},
                  "extraEnv": [{"name": "TZ", "value": "UTC"}], "extraArgs": ["--verbose"]},
    "no-crds": {"crds": {"enabled": False}, "image": {"repository": "registry.local/sr",
                                                      "tag": "0.1.0-rc1"}},
}


@pytest.fixture(scope="module")
def helm(tmp_path_factory) -> Callable[..., subprocess.CompletedProcess]:
    binary = tool("helm.sh")
    home = tmp_path_factory.mktemp("helm")

    def run(*args: str, plane: ControlPlane | None = None) -> subprocess.CompletedProcess:
        env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "HELM_CACHE_HOME": str(home / "c"),
               "HELM_CONFIG_HOME": str(home / "f"), "HELM_DATA_HOME": str(home / "d")}
        if plane is not None:
            env["KUBECONFIG"] = str(plane.kubeconfig)
        return subprocess.run([str(binary), *args], capture_output=True, text=True,
                              timeout=180, env=env)
    return run


def values_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(VALUES[name]))
    return path


def rendered(helm, tmp_path: Path, name: str) -> list[dict]:
    result = helm("template", "shardring", str(CHART), "-n", SYSTEM, "-f",
                  str(values_file(tmp_path, name)))
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def kustomized(plane: ControlPlane, path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(ok(plane, "kustomize", str(path))) if d]


def find(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_settings(deployment: dict) -> dict:
    """What the chart and the kustomize base must agree on (image, labels and the chart's own
    checksum annotation aside)."""
    pod = deployment["spec"]["template"]["spec"]
    container = {k: v for k, v in pod["containers"][0].items()
                 if k not in ("image", "imagePullPolicy")}
    container["env"] = sorted(container["env"], key=lambda e: e["name"])  # order means nothing
    return {"replicas": deployment["spec"]["replicas"], "container": container,
            **{k: pod[k] for k in ("serviceAccountName", "securityContext", "volumes",
                                   "terminationGracePeriodSeconds")}}


def test_the_chart_lints_strictly_refuses_unknown_values_and_renders_what_kustomize_does(
        plane, helm, tmp_path):
    import controller
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == controller.__version__
    for name in ("shardrings.shardring.io.yaml", "clusterkopfpeerings.kopf.dev.yaml"):
        assert (CHART / "files" / "crds" / name).read_text() == \
            (REPO / "crds" / name).read_text(), f"charts' copy of {name} drifted"
    assert (CHART / "files" / "shardring.rules.yaml").read_text() == \
        (REPO / "manifests" / "monitoring" / "shardring.rules.yaml").read_text()
    for name in VALUES:
        linted = helm("lint", "--strict", str(CHART), "-f", str(values_file(tmp_path, name)))
        assert linted.returncode == 0, f"{name}: {linted.stdout}{linted.stderr}"
    for wrong in ("replica=2", "installMode=everywhere", "metrics.serviceMonitor.enable=true",
                  "metrics.port=8080",  # (the liveness probe's port)
                  # a connection's field misspelt: the operator would stop at start, in a
                  # crash loop after an install that looked fine
                  "connections.connections.prod.namespace={payments}",
                  "connections.etcd.main.endpoint={https://etcd:2379}",
                  "connections.zookeeper.zk.host={zk:2181}"):
        refused = helm("template", str(CHART), "--set", wrong)
        assert refused.returncode != 0 and "schema" in refused.stderr.lower(), wrong
    # Helm merges maps: the shipped default connection goes only when set to null.
    only = helm("template", str(CHART), "--set", "connections.connections.default=null",
                "--set", "connections.connections.prod.address=consul-prod:8501")
    assert only.returncode == 0, only.stderr
    listed = next(d for d in yaml.safe_load_all(only.stdout) if d and d["kind"] == "ConfigMap"
                  and "connections.yaml" in (d.get("data") or {}))
    assert list(yaml.safe_load(listed["data"]["connections.yaml"])["connections"]) == ["prod"]

    # One source of truth: RBAC rules, CRDs and the Deployment's settings as manifests/ has them.
    for values, mode in (("defaults", "manifests"), ("namespaced", "manifests/namespaced")):
        chart_objects, base = rendered(helm, tmp_path, values), kustomized(plane, REPO / mode)
        for kind, name in (("ClusterRole", "shardring-operator"),
                           ("CustomResourceDefinition", "shardrings.shardring.io"),
                           ("CustomResourceDefinition", "clusterkopfpeerings.kopf.dev")):
            ours, theirs = find(chart_objects, kind, name), find(base, kind, name)
            key = "rules" if kind == "ClusterRole" else "spec"
            assert ours[key] == theirs[key], f"{values}: {kind}/{name} differs from {mode}"
        expected = pod_settings(find(base, "Deployment", "shardring-operator"))
        got = pod_settings(find(chart_objects, "Deployment", "shardring-operator"))
        if values == "namespaced":  # the values above serve two namespaces, with one replica
            expected["replicas"] = 1
            for variable in expected["container"]["env"]:
                if variable["name"] == "SHARDRING_NAMESPACES":
                    variable["value"] = "team-a,team-b"
        assert got == expected, values
    namespaced = rendered(helm, tmp_path, "namespaced")
    assert find(namespaced, "ClusterRole", "shardring-operator-namespace")["rules"] == \
        find(kustomized(plane, REPO / "manifests" / "namespaced"), "ClusterRole",
             "shardring-operator-namespace")["rules"]
    bound = {o["metadata"]["namespace"] for o in namespaced if o["kind"] == "RoleBinding"}
    assert bound == {"team-a", "team-b"}
    monitored = rendered(helm, tmp_path, "monitored")
    rule = find(monitored, "PrometheusRule", "shardring-operator")
    urls = [r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert urls and all(u.startswith("https://docs.example/docs/operations.md#") for u in urls)
    # The series' namespace label is the ring's: without honorLabels Prometheus puts the
    # operator's own there, and the alerts name every ring in shardring-system.
    endpoints = [*find(monitored, "ServiceMonitor", "shardring-operator")["spec"]["endpoints"],
                 *find(monitored, "PodMonitor", "shardring-operator")["spec"][
                     "podMetricsEndpoints"]]
    assert len(endpoints) == 2 and all(e.get("honorLabels") is True for e in endpoints)
    env = {e["name"]: e.get("value") for e in
           find(monitored, "Deployment", "shardring-operator")["spec"]["template"]["spec"][
               "containers"][0]["env"]}
    assert env["SHARDRING_MAX_MEMBERS"] == "5000" and env["SHARDRING_MIN_PUBLISH_INTERVAL"] == \
        "0.5" and env["TZ"] == "UTC" and "SHARDRING_MAX_REPLY_BYTES" not in env
    assert env["SHARDRING_MAX_RING_WORK"] == "64000000"  # not 6.4e+07, which the operator refuses
    no_minimum = helm("template", str(CHART), "--set", "limits.minPublishInterval=0")
    assert no_minimum.returncode == 0 and \
        '{name: SHARDRING_MIN_PUBLISH_INTERVAL, value: "0"}' in no_minimum.stdout
    assert not [o for o in rendered(helm, tmp_path, "no-crds")
                if o["kind"] == "CustomResourceDefinition"]


def test_every_values_file_renders_objects_the_api_server_accepts(plane, helm, tmp_path):
    ok(plane, "apply", "--server-side", "-f", str(tool("monitoring-crds.sh")))
    for namespace in (SYSTEM, "team-a", "team-b"):
        kubectl(plane, "create", "namespace", namespace)
    ok(plane, "apply", "-k", str(REPO / "crds"))  # what the chart's own objects are checked by
    wait_for(lambda: kubectl(plane, "get", "shardrings,prometheusrules,servicemonitors", "-A")
             .returncode == 0, "the kinds served", 60)
    try:
        for name in VALUES:
            result = helm("template", "shardring", str(CHART), "-n", SYSTEM, "-f",
                          str(values_file(tmp_path, name)))
            assert result.returncode == 0, result.stderr
            applied_ = subprocess.run(
                [str(plane.assets / "kubectl"), "--kubeconfig", str(plane.kubeconfig), "apply",
                 "--server-side", "--dry-run=server", "--field-manager=helm-test", "-f", "-"],
                input=result.stdout, capture_output=True, text=True, timeout=120)
            assert applied_.returncode == 0, f"{name}: {applied_.stderr}"
        ok(plane, "apply", "--server-side", "--dry-run=server", "-k",
           str(REPO / "manifests" / "monitoring"))
    finally:
        ok(plane, "delete", "-k", str(REPO / "crds"), "--ignore-not-found")
        for namespace in ("team-a", "team-b"):
            kubectl(plane, "delete", "namespace", namespace, "--wait=false")


def test_helm_install_upgrade_and_uninstall_keep_the_crds_when_asked(plane, helm, tmp_path):
    def deployment() -> dict:
        return yaml.safe_load(ok(plane, "get", "deployment", "-n", SYSTEM,
                                 "shardring-operator", "-o", "yaml"))

    installed = helm("install", "shardring", str(CHART), "-n", SYSTEM, "--create-namespace",
                     "--set", "image.repository=registry.local/shardring", plane=plane)
    assert installed.returncode == 0, installed.stderr
    pod = deployment()["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.local/shardring:0.1.0"
    assert deployment()["spec"]["replicas"] == 2 and pod["serviceAccountName"] == \
        "shardring-operator"
    assert can_i(plane, "list", "secrets", "--all-namespaces")

    # A served namespace that does not exist (a typo): refused before anything changes (Helm
    # applied the narrowed ClusterRole, then failed on its RoleBinding: the running operator
    # lost its rights in every other namespace).
    typo = helm("upgrade", "shardring", str(CHART), "-n", SYSTEM, "--reuse-values",
                "--set", "installMode=namespaced", "--set", f"namespaces={{{SYSTEM},no-such-ns}}",
                plane=plane)
    assert typo.returncode != 0 and '"no-such-ns" does not exist' in typo.stderr, typo.stderr
    assert can_i(plane, "list", "secrets", "--all-namespaces")
    upgraded = helm("upgrade", "shardring", str(CHART), "-n", SYSTEM, "--reuse-values",
                    "--set", "installMode=namespaced", "--set", "replicas=1", plane=plane)
    assert upgraded.returncode == 0, upgraded.stderr
    env = {e["name"]: e.get("value") for e in
           deployment()["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert deployment()["spec"]["replicas"] == 1 and env["SHARDRING_NAMESPACES"] == SYSTEM
    assert not can_i(plane, "list", "secrets", "--all-namespaces")
    assert can_i(plane, "get", "secrets", "-n", SYSTEM)

    removed = helm("uninstall", "shardring", "-n", SYSTEM, "--wait", plane=plane)
    assert removed.returncode == 0, removed.stderr
    assert gone(plane, "deployment", "-n", SYSTEM, "shardring-operator")
    assert gone(plane, "clusterrole", "shardring-operator")
    assert not gone(plane, "crd", "shardrings.shardring.io")  # crds.keep: the rings stay

    # Without keep, an uninstall takes the CRDs (and every ring) with it.
    again = helm("install", "shardring", str(CHART), "-n", SYSTEM, "--set", "crds.keep=false",
                 plane=plane)
    assert again.returncode == 0, again.stderr
    removed = helm("uninstall", "shardring", "-n", SYSTEM, "--wait", plane=plane)
    assert removed.returncode == 0, removed.stderr
    wait_for(lambda: gone(plane, "crd", "shardrings.shardring.io"), "the CRD deleted", 60)
    assert not gone(plane, "crd", "clusterkopfpeerings.kopf.dev")  # other kopf operators' too
