"""Change -> ConfigMap latency for each membership source, in one run on the real control plane:
a Consul instance's health flips, an etcd key's lease is revoked and the key put again, a
ZooKeeper instance's session ends and a new one registers, a Kubernetes endpoint turns not ready
and ready again (its EndpointSlice replaced, as the endpointslice controller writes it). Each
ring has 10 members and
window 0; the time is from the change made in the source to the operator's ConfigMap showing it.
Writes bench/results/sources.json (and .md).

    .venv/bin/python bench/sources_bench.py        (~4 min)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import yaml  # noqa: E402
from e2e_bench import NS, Bench, percentiles, samples_ms, save, summaries  # noqa: E402
from kubernetes import client as k8s  # noqa: E402

from controller.testing import ControlPlane  # noqa: E402
from controller.testing.etcd_registry import EtcdRegistryServer  # noqa: E402
from controller.testing.etcd_registry import Registrar as EtcdRegistrar  # noqa: E402
from controller.testing.zookeeper import Registrar as ZooKeeperRegistrar  # noqa: E402
from controller.testing.zookeeper import ZooKeeperServer  # noqa: E402

CHANGES = int(os.environ.get("BENCH_CHANGES", 100))
MEMBERS = 10
WINDOW_0 = {"stabilization": {"window": "0s", "maxDelay": "0s"}, "shards": 1024}


class SourcesBench(Bench):
    def start_with(self, connections: Path) -> None:
        env = {**os.environ, **self.plane.env(), "SHARDRING_METRICS_PORT": str(self.metrics_port),
               "MALLOC_ARENA_MAX": "2", "SHARDRING_CONSUL_CONNECTIONS": str(connections)}
        self.operator = subprocess.Popen(
            [sys.executable, "-m", "controller", "run", "--standalone"], cwd=REPO, env=env,
            stdout=open(self.plane.workdir / "operator.log", "ab"), stderr=subprocess.STDOUT)

    def timed(self, configmap: str, events: list, flip: Callable[[int], int]) -> dict:
        """``flip(n)`` makes the n-th change and returns the member count it leads to."""
        latencies = []
        for n in range(CHANGES):
            start, seen = time.monotonic(), len(events)
            want = flip(n)
            while time.monotonic() < start + 10:
                hits = [t for t, name, members in events[seen:]
                        if name == configmap and members == want]
                if hits:
                    latencies.append(hits[0] - start)
                    break
                time.sleep(0.002)
            time.sleep(0.1)  # above the operator's minimum interval between versions
        return {**percentiles(latencies), "changes": CHANGES, "missed": CHANGES - len(latencies),
                "samples_ms": samples_ms(latencies)}


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict = {"cores": os.cpu_count(), "members": MEMBERS}
    with ControlPlane() as plane:
        bench = SourcesBench(plane)
        bench.install()
        etcd = EtcdRegistryServer(plane.assets, plane.workdir / "etcd-registry")
        zookeeper = ZooKeeperServer(plane.workdir / "zookeeper")
        etcd.start()
        zookeeper.start()
        connections = plane.workdir / "connections.yaml"
        connections.write_text(yaml.safe_dump({
            "connections": {"default": {"address": plane.consul_addr}},
            "etcd": {"default": {"endpoints": [etcd.url]}},
            "zookeeper": {"default": {"hosts": [zookeeper.hosts]}}}))
        consul_ids = [bench.helper.register("bench-consul", f"c-{i}", port=9000 + i)
                      for i in range(MEMBERS)]
        etcd_members = EtcdRegistrar(etcd, "/bench/etcd/")
        zk_members = ZooKeeperRegistrar(zookeeper, "/bench/zookeeper")
        for i in range(MEMBERS):
            etcd_members.register(f"e-{i}", f"10.9.0.{i}:9100")
            zk_members.register(f"z-{i}", f"10.9.1.{i}:9100")
        bench.create_ring("consul", {"service": {"name": "bench-consul"}, **WINDOW_0})
        bench.create_ring("etcd", {"etcd": {"prefix": "/bench/etcd/"}, **WINDOW_0})
        bench.create_ring("zookeeper", {"zookeeper": {"path": "/bench/zookeeper"}, **WINDOW_0})
        discovery = k8s.DiscoveryV1Api(bench.api)

        def endpoint_slice(first_ready: bool) -> dict:
            return {"metadata": {"name": "bench-k8s-a",
                                 "labels": {"kubernetes.io/service-name": "bench-k8s"}},
                    "addressType": "IPv4", "ports": [{"port": 9100}],
                    "endpoints": [{"addresses": [f"10.9.2.{i}"],
                                   "targetRef": {"kind": "Pod", "name": f"k-{i}"},
                                   "conditions": {"ready": first_ready or i > 0}}
                                  for i in range(MEMBERS)]}
        discovery.create_namespaced_endpoint_slice(NS, endpoint_slice(True))
        bench.create_ring("kubernetes", {"kubernetes": {"service": "bench-k8s"}, **WINDOW_0})
        events: list = []
        stop = threading.Event()
        threading.Thread(target=bench._watch_rings, args=(events, stop), daemon=True).start()
        bench.start_with(connections)
        try:
            deadline = time.monotonic() + 120
            while bench.ready_rings() < 4 and time.monotonic() < deadline:
                time.sleep(0.2)

            def consul_flip(n: int) -> int:
                bench.helper.set_health(consul_ids[0], passing=n % 2 == 1)
                return MEMBERS if n % 2 else MEMBERS - 1

            def etcd_flip(n: int) -> int:
                if n % 2:
                    etcd_members.register("e-0", "10.9.0.0:9100")
                    return MEMBERS
                etcd_members.revoke("e-0")
                return MEMBERS - 1

            def zookeeper_flip(n: int) -> int:
                if n % 2:
                    zk_members.register("z-0", "10.9.1.0:9100")
                    return MEMBERS
                zk_members.end_session("z-0")
                return MEMBERS - 1
            def kubernetes_flip(n: int) -> int:
                discovery.replace_namespaced_endpoint_slice("bench-k8s-a", NS,
                                                            endpoint_slice(n % 2 == 1))
                return MEMBERS if n % 2 else MEMBERS - 1
            for name, flip in (("consul", consul_flip), ("etcd", etcd_flip),
                               ("zookeeper", zookeeper_flip), ("kubernetes", kubernetes_flip)):
                results[name] = bench.timed(f"{name}-ring", events, flip)
                print(name, json.dumps(summaries(results[name])), flush=True)
        finally:
            stop.set()
            bench.stop_operator()
            etcd_members.cleanup()
            zk_members.cleanup()
            etcd.stop()
            zookeeper.stop()
    if CHANGES != 100:
        print("partial run: bench/results left as they were")
        return 0
    save("sources", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
