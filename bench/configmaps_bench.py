"""What 10,000 ConfigMaps that are not the operator's cost it, on the real control plane.

Ten rings are served while 10,000 unrelated ConfigMaps (1 KiB each) are created and then updated
once in another namespace. The operator's CPU seconds and peak RSS over that time are recorded.
`BENCH_OPERATOR_TREE=<path>` runs the operator from another checkout (e.g. a `git worktree` of
an older commit) for a before/after comparison. Writes bench/results/configmaps.json (and .md).

    .venv/bin/python bench/configmaps_bench.py          (~4 min)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from e2e_bench import NS, Bench, save  # noqa: E402
from kubernetes import client as k8s  # noqa: E402

from controller.testing import ControlPlane  # noqa: E402

TREE = Path(os.environ.get("BENCH_OPERATOR_TREE", REPO))
COUNT = int(os.environ.get("BENCH_CONFIGMAPS", 10000))
NOISE = "unrelated"


class NoiseBench(Bench):
    def start_from(self, tree: Path) -> None:
        env = {**os.environ, **self.plane.env(), "SHARDRING_METRICS_PORT": str(self.metrics_port),
               "MALLOC_ARENA_MAX": "2"}
        self.operator = subprocess.Popen(
            [sys.executable, "-m", "controller", "run", "--standalone"], cwd=tree, env=env,
            stdout=open(self.plane.workdir / "operator.log", "ab"), stderr=subprocess.STDOUT)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.operator.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def noise(self, update: bool) -> float:
        """Create (or update) COUNT ConfigMaps; seconds it took."""
        def one(i: int) -> None:
            body = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=f"noise-{i}"),
                                   data={"payload": ("y" if update else "x") * 1024})
            for _ in range(5):
                try:
                    if update:
                        self.core.replace_namespaced_config_map(f"noise-{i}", NOISE, body)
                    else:
                        self.core.create_namespaced_config_map(NOISE, body)
                    return
                except k8s.ApiException as error:
                    if error.status not in (429, 500, 503):
                        raise
                    time.sleep(0.5)
        start = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, range(COUNT)))
        return round(time.monotonic() - start, 1)


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict = {"configmaps": COUNT, "cores": os.cpu_count()}
    with ControlPlane() as plane:
        bench = NoiseBench(plane)
        bench.install(NS, NOISE)
        for i in range(3):
            bench.helper.register("served", f"served-{i}", port=9000 + i)
        for n in range(10):
            bench.create_ring(f"ring-{n}", {"service": {"name": "served"}, "shards": 64})
        bench.start_from(TREE)
        try:
            deadline = time.monotonic() + 120
            while bench.ready_rings() < 10 and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(5)
            cpu, idle_rss = bench.cpu_seconds(), bench.rss_mb()
            created = bench.noise(update=False)
            updated = bench.noise(update=True)
            time.sleep(5)  # let the operator drain what reached it
            results["run"] = {
                "operator_cpu_seconds": round(bench.cpu_seconds() - cpu, 2),
                "rss_mb_before": round(idle_rss, 1), "rss_mb_after": round(bench.rss_mb(), 1),
                "peak_rss_mb": round(bench.peak_rss_mb(), 1),
                "create_seconds": created, "update_seconds": updated,
                "rings_ready": bench.ready_rings(),
                "operator_tree": "this checkout" if TREE == REPO else str(TREE)}
        finally:
            bench.stop_operator()
    print(json.dumps(results, indent=1, sort_keys=True))
    if TREE != REPO or COUNT != 10000:
        print("comparison or partial run: bench/results left as they were")
        return 0
    save("configmaps", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
