"""One tenant's oversized ring against an operator held to 512 MiB, on the real control plane.

A ring over a 20,000-instance Consul service with `algorithm: consistent` and 10,000 virtual
nodes is created while another ring's changes are timed (Consul change -> its ConfigMap). Run
twice: with the operator's default limits, and with the limits lifted (what the operator did before
they existed). The operator runs in a memory cgroup limited to 512 MiB, as in a pod, so running
out of memory is a real OOM kill. Writes bench/results/limits.{json,md}.

    .venv/bin/python bench/limits_bench.py        (~4 min; needs root for the cgroup)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from e2e_bench import NS, Bench, percentiles, save  # noqa: E402
from kubernetes import client as k8s  # noqa: E402

from controller.testing import ControlPlane  # noqa: E402

INSTANCES = int(os.environ.get("BENCH_HUGE_INSTANCES", 20000))
MEMORY_LIMIT = 512 << 20
CGROUP = Path(f"/sys/fs/cgroup/memory/shardring-bench-{os.getpid()}")
FLIPS = 100
UNLIMITED = {"SHARDRING_MAX_MEMBERS": str(10**9), "SHARDRING_MAX_RING_WORK": str(10**15),
             "SHARDRING_MAX_REPLY_BYTES": str(10**11)}


class LimitedBench(Bench):
    def start_limited(self, extra_env: dict[str, str]) -> bool:
        """The operator in a 512 MiB memory cgroup; False when no cgroup could be made."""
        limited = True
        try:
            CGROUP.mkdir(exist_ok=True)
            (CGROUP / "memory.limit_in_bytes").write_text(str(MEMORY_LIMIT))
            (CGROUP / "memory.max_usage_in_bytes").write_text("0")
        except OSError:
            limited = False
        env = {**os.environ, **self.plane.env(), "SHARDRING_METRICS_PORT": str(self.metrics_port),
               "MALLOC_ARENA_MAX": "2", **extra_env}

        def enter_cgroup() -> None:
            if limited:
                (CGROUP / "cgroup.procs").write_text(str(os.getpid()))
        self.operator = subprocess.Popen(
            [sys.executable, "-m", "controller", "run", "--standalone"], cwd=REPO, env=env,
            stdout=open(self.plane.workdir / "operator.log", "ab"), stderr=subprocess.STDOUT,
            preexec_fn=enter_cgroup)
        return limited

    def peak_mb(self) -> float | None:
        try:
            return int((CGROUP / "memory.max_usage_in_bytes").read_text()) / 2**20
        except OSError:
            return None

    def oom_kills(self) -> int | None:
        try:
            for line in (CGROUP / "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        except OSError:
            pass
        return None

    def condition(self, name: str, kind: str) -> dict:
        try:
            ring = self.custom.get_namespaced_custom_object("shardring.io", "v1alpha1", NS,
                                                            "shardrings", name)
        except k8s.ApiException:
            return {}
        return next((c for c in (ring.get("status") or {}).get("conditions") or []
                     if c["type"] == kind), {})

    def flips(self, ids: list[str], events: list, count: int) -> dict:
        """Flip one probe instance `count` times; seconds until the probe ring shows each."""
        latencies, missed = [], 0
        for flip in range(count):
            if self.operator.poll() is not None:
                missed += count - flip  # the operator died: every later change is missed
                break
            passing = flip % 2 == 1
            want = 10 if passing else 9
            start, seen = time.monotonic(), len(events)
            self.helper.set_health(ids[0], passing=passing)
            while time.monotonic() < start + 30:
                if any(n == "probe-ring" and m == want for _, n, m in events[seen:]):
                    latencies.append(next(t for t, n, m in events[seen:]
                                          if n == "probe-ring" and m == want) - start)
                    break
                time.sleep(0.002)
            else:
                missed += 1
            time.sleep(0.1)
        return {**percentiles(latencies), "missed": missed}

    def reply_bytes(self, service: str) -> int:
        url = f"http://{self.plane.consul_addr}/v1/health/service/{service}?passing=1"
        return len(urllib.request.urlopen(url, timeout=60).read())


def run(bench: LimitedBench, label: str, extra_env: dict[str, str], probe: list[str]) -> dict:
    limited = bench.start_limited(extra_env)
    events: list = []
    stop = threading.Event()
    threading.Thread(target=bench._watch_rings, args=(events, stop), daemon=True).start()
    deadline = time.monotonic() + 60
    while not any(n == "probe-ring" for _, n, _ in events) and time.monotonic() < deadline:
        time.sleep(0.05)
    result: dict = {"memory_cgroup_512MiB": limited, "before": bench.flips(probe, events, FLIPS)}
    bench.create_ring("huge", {"service": {"name": "huge"}, "shards": 1024,
                               "algorithm": "consistent", "virtualNodes": 10000,
                               "stabilization": {"window": "0s", "maxDelay": "0s"}})
    result["during"] = bench.flips(probe, events, FLIPS)
    result["huge_ring"] = {k: bench.condition("huge", "Degraded").get(k) for k in ("reason",
                                                                                  "message")}
    result["operator_alive"] = bench.operator.poll() is None
    result["operator_exit"] = bench.operator.returncode
    result["oom_kills"], result["peak_memory_mb"] = bench.oom_kills(), bench.peak_mb()
    stop.set()
    bench.stop_operator()
    bench.custom.delete_namespaced_custom_object("shardring.io", "v1alpha1", NS, "shardrings",
                                                 "huge")
    print(label, json.dumps(result), flush=True)
    return result


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict = {"instances": INSTANCES, "cores": os.cpu_count()}
    with ControlPlane() as plane:
        bench = LimitedBench(plane)
        bench.install()
        probe = [bench.helper.register("probe", f"probe-{i}", port=9000 + i) for i in range(10)]
        bench.create_ring("probe", {"service": {"name": "probe"}, "shards": 1024,
                                    "stabilization": {"window": "0s", "maxDelay": "0s"}})
        bench.fleet.register([(f"huge-node-{i // 100}", "huge", f"huge-{i}",
                               f"10.{i // 62500}.{i // 250 % 250}.{i % 250}", 9100)
                              for i in range(INSTANCES)])
        results["consul_reply_bytes"] = bench.reply_bytes("huge")
        try:
            results["default_limits"] = run(bench, "default limits", {}, probe)
            results["limits_lifted"] = run(bench, "limits lifted", UNLIMITED, probe)
        finally:
            bench.stop_operator()
            try:
                CGROUP.rmdir()
            except OSError:
                pass
    if INSTANCES != 20000:
        print(json.dumps(results, indent=1, sort_keys=True))
        print("partial run: bench/results left as they were")
        return 0
    save("limits", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
