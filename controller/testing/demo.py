"""``make demo``: a real control plane, the operator, a ShardRing over demo Consul instances, one
instance failing, and what moved. Quiet: each step is one line; logs go to files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import consul
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from controller.client import parse
from controller.core import ringfile
from controller.testing.consul_helpers import ConsulHelper
from controller.testing.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "shardring.yaml"


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def wait(probe, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = probe()
        except k8s.ApiException:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"demo failed: timed out waiting for {what}")


def ownership(ring: ringfile.RingFile) -> str:
    total = ring.assignment.shards * ring.assignment.spec.replication
    lines = [f"    {'member':<36} {'shards':>6} {'share':>7}"]
    for member_id, load in sorted(ring.assignment.loads.items()):
        lines.append(f"    {member_id:<36} {load:>6} {100 * load / total:>6.1f}%")
    return "\n".join(lines)


def main() -> int:
    started = time.monotonic()
    step("Starting a local control plane (etcd, kube-apiserver, controller-manager, Consul)")
    plane = ControlPlane()
    if not plane.start_for_command_line():
        return 1
    operator = None
    log_path = plane.workdir / "operator.log"
    try:
        print(f"    kube-apiserver {plane.api_url}   consul http://{plane.consul_addr}")
        api = k8s_config.new_client_from_config(config_file=str(plane.kubeconfig))
        core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)

        step("Installing the CRDs (kubectl apply -k crds/)")
        plane.install_crds()

        step("Registering 5 demo scrapers in Consul (service scrape_prometheus_node_exporter)")
        host, port = plane.consul_addr.rsplit(":", 1)
        helper = ConsulHelper(consul.Consul(host=host, port=int(port)))
        ids = [helper.register("scrape_prometheus_node_exporter", f"scraper-{i}",
                               address=f"10.0.0.{10 + i}", port=9100, tags=["scraper"])
               for i in range(5)]
        print("    " + ", ".join(ids))

        step(f"Starting the operator (log: {log_path})")
        env = {**os.environ, **plane.env()}
        operator = subprocess.Popen(
            [sys.executable, "-m", "controller", "run", "--standalone"], cwd=REPO, env=env,
            stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)

        step(f"Applying {EXAMPLE.relative_to(REPO)}")
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="monitoring")))
        body = yaml.safe_load(EXAMPLE.read_text())
        custom.create_namespaced_custom_object("shardring.io", "v1alpha1", "monitoring",
                                               "shardrings", body)
        name = body["metadata"]["name"]

        def ready():
            status = custom.get_namespaced_custom_object(
                "shardring.io", "v1alpha1", "monitoring", "shardrings", name).get("status") or {}
            return any(c["type"] == "Ready" and c["status"] == "True"
                       for c in status.get("conditions") or []) and status
        wait(ready, "the ring to become Ready")
        kubectl = [str(plane.assets / "kubectl"), "--kubeconfig", str(plane.kubeconfig)]
        step("kubectl get shardrings -n monitoring -o wide")
        subprocess.run(kubectl + ["get", "shardrings", "-n", "monitoring", "-o", "wide"])

        configmap = f"{name}-ring"
        before = ringfile.parse(core.read_namespaced_config_map(configmap, "monitoring")
                                .data["ring.json"])
        step(f"The ring (ConfigMap {configmap}, version {before.version})")
        print(ownership(before))
        keys = before.keys()
        data = core.read_namespaced_config_map(configmap, "monitoring").data
        print(f"    ConfigMap keys: ring.json, member.<key> x{len(keys)}, "
              f"relabel.<key>.yaml x{sum(k.startswith('relabel.') for k in data)}")

        # Members are <consul node>/<service ID>; a scraper finds itself by its endpoint.
        failed = parse(ringfile.render(before)).member_at("10.0.0.12", 9100)
        print(f"    scraper-2 (10.0.0.12:9100) is member {failed}")

        step("scraper-2 fails its health check")
        helper.set_health("scraper-2", passing=False)
        after = wait(lambda: (lambda r: r if r.version > before.version else None)(
            ringfile.parse(core.read_namespaced_config_map(configmap, "monitoring")
                           .data["ring.json"])), "the ring to follow", timeout=60)
        moved = after.assignment.moved_from(before.assignment)
        print(f"    ring version {before.version} -> {after.version}: "
              f"{len(before.assignment.members)} -> {len(after.assignment.members)} members, "
              f"{moved} of {before.assignment.shards} shards moved "
              f"(only scraper-2's {before.assignment.loads[failed]})")
        print(ownership(after))
        step("kubectl get shardrings -n monitoring -o wide")
        subprocess.run(kubectl + ["get", "shardrings", "-n", "monitoring", "-o", "wide"])
        events = [e for e in core.list_namespaced_event("monitoring").items
                  if e.reason == "Resharded"]
        for event in events[-2:]:
            print(f"    event Resharded: {event.message}")
        step(f"Done in {time.monotonic() - started:.0f} s; tearing down")
        return 0
    except SystemExit:
        if log_path.exists():  # what the operator said is the first thing to look at
            tail = log_path.read_text(errors="replace").splitlines()[-20:]
            print("\n    operator log (last lines):\n" + "\n".join(f"    {line}" for line in tail),
                  file=sys.stderr)
        raise
    finally:
        if operator is not None:
            operator.terminate()
            try:
                operator.wait(30)
            except subprocess.TimeoutExpired:
                operator.kill()
        plane.stop()


if __name__ == "__main__":
    sys.exit(main())
