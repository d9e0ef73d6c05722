"""Propagation side by side with consul-template (HashiCorp's tool that renders Consul membership
into files), in one run on the same agent: one service of 10 instances, one health check flipped
at a time; for every flip, the time from the change to the operator's ConfigMap showing it (a
ring with window 0) and to consul-template's file showing it (a template listing the service's
passing instances). Both follow the same flips; the ratio of the p99s is the figure (issue #23:
the operator's p99 within 1.5x consul-template's, although it publishes through the API server).
In the same run, after the flips, the one write the operator cannot skip, alone: a bare Python
client replacing a ConfigMap of the same data, as often, timed from the request to the watch
event (the operator's p99 is about consul-template's plus this one's).
consul-template is built from its pinned Go module by hack/consul-template.sh. Writes
bench/results/template.{json,md}.

    .venv/bin/python bench/template_bench.py        (~2 min once built)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from e2e_bench import NS, Bench, percentiles, save  # noqa: E402

from controller.testing import ControlPlane  # noqa: E402

CHANGES = int(os.environ.get("BENCH_CHANGES", 200))
MEMBERS = 10
SERVICE = "bench-template"
TEMPLATE = '{{ range service "' + SERVICE + '" }}{{ .ID }}\n{{ end }}'


def consul_template() -> str:
    return subprocess.run(["bash", str(REPO / "hack" / "consul-template.sh")], check=True,
                          capture_output=True, text=True).stdout.strip()


def follow_file(path: Path, seen: list[tuple[float, int]], stop: threading.Event) -> None:
    """(when, lines) each time consul-template's output changes (it renames a new file in)."""
    last = None
    while not stop.is_set():
        try:
            stat = path.stat()
            key = (stat.st_ino, stat.st_mtime_ns)
            if key != last:
                last = key
                seen.append((time.monotonic(), len(path.read_text().splitlines())))
        except FileNotFoundError:
            pass
        time.sleep(0.0005)


def api_write_times(bench: Bench, events: list) -> list[float]:
    """Seconds from a bare client's replace of a ConfigMap holding the ring's data (a copy beside
    it, with the operator's label so the same watch sees it) to its watch event, CHANGES times,
    after the flips (the official client's CoreV1Api: its serialisation counts too)."""
    ring = bench.core.read_namespaced_config_map("template-ring", NS)
    data = dict(ring.data)
    body = {"metadata": {"name": "template-floor",
                         "labels": {"app.kubernetes.io/managed-by": "shardring-operator"}},
            "data": data}
    bench.core.create_namespaced_config_map(NS, body)
    times = []
    for n in range(CHANGES):
        data["ring.json"] = data["ring.json"].rstrip() + ("\n" if n % 2 else "")
        seen = len(events)
        start = time.monotonic()
        bench.core.replace_namespaced_config_map("template-floor", NS, {**body, "data": data})
        while time.monotonic() < start + 10:
            hits = [t for t, name, _ in events[seen:] if name == "template-floor"]
            if hits:
                times.append(hits[0] - start)
                break
            time.sleep(0.001)
        time.sleep(0.2)
    bench.core.delete_namespaced_config_map("template-floor", NS)
    return times


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    binary = consul_template()
    version = subprocess.run([binary, "-v"], capture_output=True, text=True)
    results: dict = {"cores": os.cpu_count(), "members": MEMBERS, "changes": CHANGES,
                     "consul_template": (version.stdout or version.stderr).strip()}
    with ControlPlane() as plane:
        bench = Bench(plane)
        bench.install()
        ids = [bench.helper.register(SERVICE, f"t-{i}", port=9000 + i) for i in range(MEMBERS)]
        bench.create_ring("template", {"service": {"name": SERVICE}, "shards": 1024,
                                       "stabilization": {"window": "0s", "maxDelay": "0s"}})
        source, output = plane.workdir / "members.tpl", plane.workdir / "members.txt"
        source.write_text(TEMPLATE)
        events: list = []
        lines: list[tuple[float, int]] = []
        stop = threading.Event()
        threading.Thread(target=bench._watch_rings, args=(events, stop), daemon=True).start()
        threading.Thread(target=follow_file, args=(output, lines, stop), daemon=True).start()
        bench.start_operator()
        renderer = subprocess.Popen(
            [binary, "-consul-addr", plane.consul_addr, "-template", f"{source}:{output}",
             "-log-level", "err"],
            stdout=open(plane.workdir / "consul-template.log", "ab"), stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while (bench.ready_rings() < 1 or not lines) and time.monotonic() < deadline:
                time.sleep(0.2)
            operator, template = [], []
            for n in range(CHANGES):
                want = MEMBERS if n % 2 else MEMBERS - 1
                seen_events, seen_lines = len(events), len(lines)
                start = time.monotonic()
                bench.helper.set_health(ids[0], passing=n % 2 == 1)
                got: dict[str, float] = {}
                while time.monotonic() < start + 10 and len(got) < 2:
                    if "operator" not in got:
                        hits = [t for t, name, members in events[seen_events:]
                                if name == "template-ring" and members == want]
                        if hits:
                            got["operator"] = hits[0] - start
                    if "template" not in got:
                        hits = [t for t, count in lines[seen_lines:] if count == want]
                        if hits:
                            got["template"] = hits[0] - start
                    time.sleep(0.001)
                if "operator" in got:
                    operator.append(got["operator"])
                if "template" in got:
                    template.append(got["template"])
                time.sleep(0.2)  # above the operator's minimum interval between versions
            api_writes = api_write_times(bench, events)
        finally:
            stop.set()
            renderer.send_signal(signal.SIGINT)
            try:
                renderer.wait(5)
            except subprocess.TimeoutExpired:  # a blocking query in flight: not our concern
                renderer.kill()
                renderer.wait()
            bench.stop_operator()
    results["operator"] = {**percentiles(operator), "missed": CHANGES - len(operator)}
    results["consul_template"] = {**percentiles(template), "missed": CHANGES - len(template),
                                  "version": results["consul_template"]}
    if operator and template:
        results["p99_ratio"] = round(results["operator"]["p99_ms"] /
                                     results["consul_template"]["p99_ms"], 2)
        results["p50_ratio"] = round(results["operator"]["p50_ms"] /
                                     results["consul_template"]["p50_ms"], 2)
    results["api_write"] = {**percentiles(api_writes), "missed": CHANGES - len(api_writes)}
    if template and api_writes:  # what the operator's path costs beyond its own work, at p99
        results["consul_template_plus_api_write_p99_ms"] = round(
            results["consul_template"]["p99_ms"] + results["api_write"]["p99_ms"], 1)
    results["targets"] = {"p99_ratio": 1.5}
    print(json.dumps(results, indent=1))
    if CHANGES != 200:
        print("partial run: bench/results left as they were")
        return 0
    save("template", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
