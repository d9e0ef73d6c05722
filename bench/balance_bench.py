"""Balancing by load on real Prometheus servers (issue #26): 4 scrapers split 200 targets whose
series counts are heavy-tailed (most near 50, four of them 50-100x that), K = 1024. In one run,
side by side, each scraper's own ``prometheus_tsdb_head_series`` and the samples it scrapes, and
max/mean over the four:

1. hashmod: four fresh servers with Prometheus Operator-style ``hashmod`` over the scraper count
   (no ring, no agent);
2. count: the ring balanced by count (today's default), with a ring agent beside each server
   (``--load-from-prometheus``: the load is each target's ``scrape_samples_scraped``);
3. load: the same ring switched to ``balance.by: load`` (tolerance 10 %, at most 5 % of the
   shards per rebalance, a rebalance at most every 20 s); sampled every 0.25 s until it is
   Balanced: seconds with some target scraped by no server (must be 0) or by two (a handover's
   overlap), the moves of every rebalance against its budget;
4. steady: ten more intervals of the same load: ring versions published (must be 0);
5. loss: one scraper killed: targets moved (only its own may), then the rebalances that even
   the load over the three again.

Prometheus runs with 1-minute blocks (hidden flags meant for tests) so that the series of targets
a server no longer scrapes leave its head within minutes instead of hours: head series are read
after they have.

    .venv/bin/python bench/balance_bench.py        (make bench-balance, ~15 min)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from agent_bench import AgentBench  # noqa: E402
from e2e_bench import NS, save  # noqa: E402

from controller.client import shard_of  # noqa: E402
from controller.testing import ControlPlane  # noqa: E402
from controller.testing.scrapers import PrometheusServer, ScraperFleet, Targets  # noqa: E402

TARGETS, SCRAPERS, SHARDS = 200, 4, 1024
INTERVAL_S, STEADY_INTERVALS, SAMPLE = 20, 10, 0.25
BLOCKS = ("--storage.tsdb.min-block-duration=1m", "--storage.tsdb.max-block-duration=1m")
# Long enough for the series of targets a server let go to leave its head (1-minute blocks: the
# head is cut once it spans 1.5 minutes, checked every minute).
HEAD_GC_S = 200
HASHMOD = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: targets
    consul_sd_configs:
      - server: '{consul}'
        services: [{service}]
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__address__]
        modulus: {modulus}
        target_label: __tmp_hash
        action: hashmod
      - source_labels: [__tmp_hash]
        regex: '{index}'
        action: keep
"""


def skewed_series() -> list[int]:
    """Heavy-tailed series counts (Pareto, alpha 1.2, median 50), four of them 50-100x the
    median; the same list on every run."""
    rng = np.random.default_rng(26)
    raw = rng.pareto(1.2, TARGETS) + 1.0
    series = np.clip(np.round(raw / np.median(raw) * 50), 1, 2500).astype(int)
    for place, times in zip((11, 57, 123, 178), (50, 70, 85, 100), strict=True):
        series[place] = 50 * times
    return [int(s) for s in series]


def spread(values: list[float]) -> dict:
    return {"per_server": [round(v) for v in values],
            "max_over_mean": round(max(values) / (sum(values) / len(values)), 3)}


class BalanceBench(AgentBench):
    def __init__(self, plane: ControlPlane) -> None:
        super().__init__(plane)
        self.series = skewed_series()
        self.targets = Targets(TARGETS, self.series)
        self.target_service, self.scraper_service = "balance-targets", "balance-scrapers"
        for i, address in enumerate(self.targets.addresses):
            self.helper.register(self.target_service, f"target-{i}", address="127.0.0.1",
                                 port=int(address.rsplit(":", 1)[1]))

    def hashmod(self) -> dict:
        """Fresh servers, each keeping its hashmod share of the targets."""
        servers = []
        try:
            for index in range(SCRAPERS):
                home = self.plane.workdir / f"hashmod-{index}"
                home.mkdir(parents=True)
                config = home / "prometheus.yml"
                config.write_text(HASHMOD.format(consul=self.plane.consul_addr,
                                                 service=self.target_service,
                                                 modulus=SCRAPERS, index=index))
                servers.append(PrometheusServer(self.plane.assets, home, config, flags=BLOCKS))
                servers[-1].start()
            expected = [0.0] * SCRAPERS
            for address, many in zip(self.targets.addresses, self.series, strict=True):
                expected[shard_of(address, SCRAPERS)] += many  # hashmod is md5 mod N too
            self._wait(lambda: [s.samples_scraped() for s in servers] == expected, 90)
            time.sleep(3)
            return {"head_series": spread([s.head_series() or 0.0 for s in servers]),
                    "scraped_samples": spread([s.samples_scraped() or 0.0 for s in servers])}
        finally:
            for server in servers:
                server.stop()

    def ring(self) -> dict:
        self.create_ring("scrapers", {
            "service": {"name": self.scraper_service}, "shards": SHARDS,
            "stabilization": {"window": "0s", "maxDelay": "0s", "maxMemberLossPercent": 100}})
        fleet = ScraperFleet(self.plane.assets, self.plane.workdir / "scrapers", self.consul,
                             self.plane.consul_addr, self.scraper_service, self.target_service,
                             f"{NS}/scrapers-ring", {**os.environ, **self.plane.env()},
                             agent_args=("--load-from-prometheus", "--load-interval", "2"),
                             prometheus_flags=BLOCKS)
        results: dict = {}
        try:
            scrapers = [fleet.add(f"prometheus-{i}") for i in range(SCRAPERS)]
            for scraper in scrapers:
                self._wait(scraper.prometheus.config.exists, 30)
                scraper.prometheus.start()
            names = {s.name for s in scrapers}
            self._until_split(fleet, self.targets.addresses, names, 90)
            # (While the ring filled up, the first scrapers scraped more than their share.)
            time.sleep(HEAD_GC_S)
            results["count"] = self.measure(scrapers)
            print("count:", json.dumps(results["count"]), flush=True)

            version = self.status("scrapers").get("ringVersion")
            self.custom.patch_namespaced_custom_object(
                "shardring.io", "v1alpha1", NS, "shardrings", "scrapers",
                {"spec": {"balance": {"by": "load", "tolerancePercent": 10,
                                      "maxMovesPercent": 5, "interval": f"{INTERVAL_S}s",
                                      "smoothing": "10s"}}})
            results["load"] = self.converge(fleet, names, version, 600)
            time.sleep(HEAD_GC_S)
            results["load"].update(self.measure(scrapers))
            print("load:", json.dumps(results["load"]), flush=True)

            settled = self.status("scrapers")["ringVersion"]
            time.sleep(INTERVAL_S * STEADY_INTERVALS)
            results["steady"] = {"seconds": INTERVAL_S * STEADY_INTERVALS,
                                 "versions_published":
                                     self.status("scrapers")["ringVersion"] - settled}
            print("steady:", json.dumps(results["steady"]), flush=True)

            split = self._until_split(fleet, self.targets.addresses, names, 30)["split"]
            loads = [s.prometheus.samples_scraped() or 0 for s in scrapers]
            victim = scrapers[int(np.argmax(loads))]  # the most loaded server
            version = self.status("scrapers")["ringVersion"]
            victim.prometheus.kill()
            lost = self._until_split(fleet, self.targets.addresses, names - {victim.name}, 90,
                                     split)
            owned = {t for t, name in split.items() if name == victim.name}
            moved = {t for t in self.targets.addresses if lost["split"].get(t) != split.get(t)}
            survivors = [s for s in scrapers if s is not victim]
            time.sleep(3)  # every target scraped by its new owner
            results["loss"] = {"targets_moved": len(moved), "victims_targets": len(owned),
                               "only_its_targets_moved": moved <= owned,
                               "unscraped_s": lost["unscraped_s"],
                               "scraped_samples_after_loss": spread(
                                   [s.prometheus.samples_scraped() or 0.0 for s in survivors])}
            evened = self.converge(fleet, names - {victim.name}, version, 600)
            results["loss"]["rebalanced"] = {
                key: evened[key] for key in ("rebalances", "moves", "unscraped_s", "seconds",
                                             "budget")}
            time.sleep(5)
            results["loss"]["scraped_samples_rebalanced"] = spread(
                [s.prometheus.samples_scraped() or 0.0 for s in survivors])
            print("loss:", json.dumps(results["loss"]), flush=True)
        finally:
            fleet.stop()
        return results

    def measure(self, scrapers: list) -> dict:
        servers = [s.prometheus for s in scrapers]
        return {"head_series": spread([s.head_series() or 0.0 for s in servers]),
                "scraped_samples": spread([s.samples_scraped() or 0.0 for s in servers])}

    def converge(self, fleet: ScraperFleet, names: set[str], since_version: int,
                 timeout: float) -> dict:
        """Sample every SAMPLE s until the ring is Balanced with no handover in flight and every
        target is scraped by exactly one of ``names``; every rebalance's moves on the way."""
        start = time.monotonic()
        unscraped = doubled = 0.0
        rebalances: dict[int, int] = {}
        while time.monotonic() < start + timeout:
            sampled = time.monotonic()
            owners = fleet.scraped_by(self.targets.addresses) or {}
            counts = {a: len(owners.get(a, ())) for a in self.targets.addresses}
            unscraped += SAMPLE if any(c == 0 for c in counts.values()) else 0.0
            doubled += SAMPLE if any(c > 1 for c in counts.values()) else 0.0
            status = self.status("scrapers")
            last = status.get("lastRebalance") or {}
            if last.get("ringVersion", 0) > since_version:
                rebalances[last["ringVersion"]] = last["moves"]
            balanced = next((c for c in status.get("conditions") or []
                             if c["type"] == "Balanced"), {})
            if balanced.get("status") == "True" and "handover" not in status and \
                    all(c == 1 for c in counts.values()) and \
                    len({n for n, f in fleet.active().items() if f}) == len(names):
                break
            time.sleep(max(0.0, SAMPLE - (time.monotonic() - sampled)))
        else:
            raise SystemExit(f"not balanced within {timeout} s: {self.status('scrapers')}")
        return {"seconds": round(time.monotonic() - start, 1), "rebalances": len(rebalances),
                "moves": [rebalances[v] for v in sorted(rebalances)],
                "budget": max(1, SHARDS * 5 // 100), "unscraped_s": unscraped,
                "doubled_s": doubled,
                "operator_imbalance": (status.get("measuredLoad") or {}).get("imbalance")}


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict = {"cores": os.cpu_count(), "targets": TARGETS, "scrapers": SCRAPERS,
                     "shards": SHARDS}
    with ControlPlane() as plane:
        bench = BalanceBench(plane)
        bench.install()
        results["series"] = {"total": sum(bench.series), "median": int(np.median(bench.series)),
                             "max": max(bench.series)}
        try:
            print("hashmod ...", flush=True)
            results["hashmod"] = bench.hashmod()
            print("hashmod:", json.dumps(results["hashmod"]), flush=True)
            bench.start_operator()
            results.update(bench.ring())
        finally:
            bench.stop_operator()
            bench.targets.stop()
    save("balance", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
