"""The workload's side, on the real control plane with real Prometheus servers. Writes
bench/results/agent.json (and .md).

1. files: a Consul health flip -> the ring agent's files swapped (ring.json in its directory shows
   the new membership), window 0, BENCH_AGENT_CHANGES (200) changes.
2. scrapers: 3 Prometheus servers (each with an agent; Consul HTTP check on /-/ready every 1 s)
   split 60 targets. BENCH_KILLS (10) times: one is killed, then started again. Per event: the
   seconds until every target is active in exactly one live server; the seconds during which some
   target was active in no server, or in two (sampled every 50 ms); targets moved, next to the
   optimum (the lost server's targets; what the returning one takes) and to Prometheus
   Operator-style hashmod over the number of scrapers (3 -> 2 and back). Joins are handed over
   make-before-break (the default 60 s timeout); a join's time includes Prometheus' start.
   Events are 10 s apart (QUIET, below).

    .venv/bin/python bench/agent_bench.py        (~8 min)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from e2e_bench import NS, Bench, percentiles, save, summaries  # noqa: E402

from controller.testing import ControlPlane  # noqa: E402
from controller.testing.scrapers import AgentProcess, ScraperFleet, Targets  # noqa: E402

CHANGES = int(os.environ.get("BENCH_AGENT_CHANGES", 200))
KILLS = int(os.environ.get("BENCH_KILLS", 10))
MEMBERS, TARGETS, SCRAPERS, SAMPLE = 10, 60, 3, 0.05
# Between events: Prometheus' discovery manager sends target updates at most every 5 s while
# updates keep coming (its hard-coded updatert), so events seconds apart would time that, not us.
QUIET = 10.0
VERSION = re.compile(rb'"ringVersion":(\d+)')


def ring_spec(service: str, **extra) -> dict:
    return {"service": {"name": service}, "shards": 256,
            "stabilization": {"window": "0s", "maxDelay": "0s", "maxMemberLossPercent": 100},
            **extra}


class AgentBench(Bench):
    def create_ring(self, name: str, spec: dict) -> None:
        self.custom.create_namespaced_custom_object(
            "shardring.io", "v1alpha1", NS, "shardrings",
            {"apiVersion": "shardring.io/v1alpha1", "kind": "ShardRing",
             "metadata": {"name": name}, "spec": spec})

    def status(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(
            "shardring.io", "v1alpha1", NS, "shardrings", name).get("status") or {}

    def files(self) -> dict:
        """Consul change -> the agent's files."""
        service = "agent-files"
        ids = [self.helper.register(service, f"{service}-{i}", port=9000 + i)
               for i in range(MEMBERS)]
        # Propagation alone: no handover (its second version waits for agents that are not
        # here); the scrapers below measure handovers.
        self.create_ring("files", ring_spec(service, handover={"timeout": "0s"}))
        env = {**os.environ, **self.plane.env()}
        agent = AgentProcess(self.plane.workdir / "files-agent", env, f"{NS}/files-ring",
                             "bench-0", "--address", "127.0.0.1", "--port", "9000")
        ring_json = agent.dir / "ring.json"
        try:
            self._wait(lambda: self._members(ring_json) == MEMBERS, 30)
            swaps = []
            for n in range(CHANGES):
                victim = ids[1 + n // 2 % (MEMBERS - 1)]
                joining = n % 2 == 1
                want = MEMBERS if joining else MEMBERS - 1
                start = time.monotonic()
                self.helper.set_health(victim, passing=joining)
                if self._wait(lambda want=want: self._members(ring_json) == want, 10):
                    swaps.append(time.monotonic() - start)
                time.sleep(0.15)  # above the operator's minimum interval between versions
        finally:
            agent.stop()
        return {"consul_change_to_files": {**percentiles(swaps), "changes": CHANGES,
                                           "missed": CHANGES - len(swaps)}}

    @staticmethod
    def _wait(probe, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if probe():
                return True
            time.sleep(0.001)
        return False

    @staticmethod
    def _members(path: Path) -> int | None:
        try:
            return len(json.loads(path.read_bytes())["members"])
        except (OSError, ValueError):
            return None

    def scrapers(self) -> dict:
        targets = Targets(TARGETS)
        target_service, scraper_service = "bench-targets", "bench-scrapers"
        for i, address in enumerate(targets.addresses):
            self.helper.register(target_service, f"target-{i}", address="127.0.0.1",
                                 port=int(address.rsplit(":", 1)[1]))
        self.create_ring("scrapers", ring_spec(scraper_service))
        fleet = ScraperFleet(self.plane.assets, self.plane.workdir / "scrapers", self.consul,
                             self.plane.consul_addr, scraper_service, target_service,
                             f"{NS}/scrapers-ring", {**os.environ, **self.plane.env()})
        try:
            scrapers = [fleet.add(f"prometheus-{i}") for i in range(SCRAPERS)]
            for scraper in scrapers:
                self._wait(scraper.prometheus.config.exists, 30)
                scraper.prometheus.start()
            names = {s.name for s in scrapers}
            split = self._until_split(fleet, targets.addresses, names, 60)["split"]
            kills, joins = [], []
            for n in range(KILLS):
                victim = scrapers[n % SCRAPERS]
                time.sleep(QUIET)
                victim.prometheus.kill()
                kills.append(self._until_split(fleet, targets.addresses,
                                               names - {victim.name}, 60, split))
                # The fewest that can move: the lost server's targets.
                kills[-1]["optimum"] = sum(1 for name in split.values() if name == victim.name)
                split = kills[-1]["split"]
                time.sleep(QUIET)
                victim.prometheus.start()
                joins.append(self._until_split(fleet, targets.addresses, names, 60, split))
                split = joins[-1]["split"]
                # The fewest that can move: what the returning server now scrapes.
                joins[-1]["optimum"] = sum(1 for name in split.values() if name == victim.name)
                print(f"kill {n}: {kills[-1]['seconds']:.2f} s, join {joins[-1]['seconds']:.2f} s",
                      flush=True)
        finally:
            fleet.stop()
            targets.stop()
        return {"check_interval_s": 1, "scrape_interval_s": 1, "quiet_between_events_s": QUIET,
                "discovery_reload_interval_s": 1, "scrapers": SCRAPERS,
                "targets": TARGETS, "handover_timeout_s": 60,
                "loss": summary(kills, SCRAPERS, SCRAPERS - 1, targets.addresses),
                "join": summary(joins, SCRAPERS - 1, SCRAPERS, targets.addresses)}

    def _until_split(self, fleet: ScraperFleet, addresses: list[str], names: set[str],
                     timeout: float, before: dict | None = None) -> dict:
        """Sample every SAMPLE s until each target is active in exactly one of ``names``."""
        start = time.monotonic()
        unscraped = doubled = 0.0
        while time.monotonic() < start + timeout:
            sampled = time.monotonic()
            active = fleet.active()
            counts = {a: 0 for a in addresses}
            owner: dict[str, str] = {}
            for name, found in active.items():
                for target in found or ():
                    if target in counts:
                        counts[target] += 1
                        owner[target] = name
            if any(c == 0 for c in counts.values()):
                unscraped += SAMPLE
            if any(c > 1 for c in counts.values()):
                doubled += SAMPLE
            if all(c == 1 for c in counts.values()) and set(owner.values()) == names and \
                    set(active) >= names:
                moved = sum(1 for a in addresses if before and before.get(a) != owner[a])
                return {"seconds": time.monotonic() - start, "unscraped_s": unscraped,
                        "doubled_s": doubled, "moved": moved, "split": owner}
            time.sleep(max(0.0, SAMPLE - (time.monotonic() - sampled)))
        return {"seconds": None, "unscraped_s": unscraped, "doubled_s": doubled, "moved": None,
                "split": before or {}}


def hashmod_moved(addresses: list[str], before: int, after: int) -> int:
    """Targets whose scraper changes when Prometheus Operator-style sharding goes from ``before``
    to ``after`` scrapers (scraper = hashmod(address, scrapers))."""
    def shard(address: str, n: int) -> int:
        return int.from_bytes(hashlib.md5(address.encode()).digest()[8:16], "big") % n
    return sum(1 for a in addresses if shard(a, before) != shard(a, after))


def summary(events: list[dict], before: int, after: int, addresses: list[str]) -> dict:
    done = [e for e in events if e["seconds"] is not None]
    moved = [e["moved"] for e in done]
    optimum = [e["optimum"] for e in done]
    return {"to_exactly_once": {**percentiles([e["seconds"] for e in done]),
                                "events": len(events), "missed": len(events) - len(done)},
            "unscraped_s": {"mean": round(sum(e["unscraped_s"] for e in events) /
                                          max(1, len(events)), 2),
                            "max": round(max((e["unscraped_s"] for e in events), default=0), 2)},
            "doubled_s": {"mean": round(sum(e["doubled_s"] for e in events) /
                                        max(1, len(events)), 2),
                          "max": round(max((e["doubled_s"] for e in events), default=0), 2)},
            "targets_moved": {"mean": round(sum(moved) / max(1, len(moved)), 1),
                              "optimum_mean": round(sum(optimum) / max(1, len(optimum)), 1),
                              "hashmod_over_scrapers": hashmod_moved(addresses, before, after)},
            "per_event": [{"seconds": None if e["seconds"] is None else round(e["seconds"], 2),
                           "unscraped_s": round(e["unscraped_s"], 2),
                           "doubled_s": round(e["doubled_s"], 2), "moved": e["moved"]}
                          for e in events]}


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict = {"cores": os.cpu_count()}
    with ControlPlane() as plane:
        bench = AgentBench(plane)
        bench.install()
        bench.start_operator()
        try:
            print(f"files: {CHANGES} Consul changes ...", flush=True)
            results.update(bench.files())
            print(json.dumps(results), flush=True)
            print(f"scrapers: {KILLS} kills and returns ...", flush=True)
            results["scrapers"] = bench.scrapers()
            print(json.dumps(summaries(results["scrapers"])), flush=True)
        finally:
            bench.stop_operator()
    if (CHANGES, KILLS) != (200, 10):
        print("partial run: bench/results left as they were")
        return 0
    save("agent", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
