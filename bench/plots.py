"""Draw the saved benchmark figures (bench/results/*.json) as pictures (bench/results/*.png).

    .venv/bin/python bench/plots.py            (`make bench-plots`; `make bench` ends with it)

Each picture is drawn from one results file and only from it, so a picture is as old as its
figures. A results file written before it kept raw measurements cannot be drawn: the picture is
left as it was and the command says which bench to run again. The same results give the same
bytes (no timestamp or version in the PNG).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; also what makes the output independent of the desktop

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SOURCES = ("consul", "etcd", "zookeeper", "kubernetes")


class NotDrawable(Exception):
    """The results file lacks what the picture needs (it predates raw measurements)."""


def _figure(title: str) -> tuple[Figure, plt.Axes]:
    figure, axes = plt.subplots(figsize=(7.5, 4.2), dpi=100)
    axes.set_title(title, fontsize=11)
    axes.grid(True, alpha=0.3)
    return figure, axes


def propagation_cdf(results: dict) -> Figure:
    """sources.json: change in the source -> ConfigMap, every change, one curve per source."""
    figure, axes = _figure(f"Change in the source → ConfigMap ({results['members']} members, "
                           "window 0)")
    for source in SOURCES:
        samples = results.get(source, {}).get("samples_ms")
        if not samples:
            raise NotDrawable(f"sources.json has no samples_ms for {source}: "
                              "run `make bench-sources`")
        ordered = sorted(samples)
        fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
        axes.step(ordered, fractions, where="post",
                  label=f"{source} (p50 {results[source]['p50_ms']:g} ms, "
                        f"p99 {results[source]['p99_ms']:g} ms)")
    axes.set_xscale("log")
    axes.set_xlabel("milliseconds (log scale)")
    axes.set_ylabel("fraction of changes")
    axes.set_ylim(0, 1.02)
    axes.legend(loc="lower right", fontsize=8)
    return figure


def moves_vs_hashmod(results: dict, shards: int = 16384) -> Figure:
    """ring.json: shards moved by one member joining or leaving a ring of ``shards`` shards,
    against hashmod over the members and the optimum (the fewest any balanced assignment moves)."""
    rows = {(r["algorithm"], r["members"]): r for r in results["rows"] if r["shards"] == shards}
    members = sorted(m for a, m in rows if a == "hashmod" and ("balanced", m) in rows)
    if not members:
        raise NotDrawable(f"ring.json has no hashmod rows for K={shards}: run `make bench-ring`")
    events = [(event, m) for event in ("join", "leave") for m in members]
    figure, axes = _figure(f"Shards moved by one scale event (K = {shards:,})")
    positions, width = list(range(len(events))), 0.27
    hashmod = [rows[("hashmod", m)][f"{event}_moved"] / shards for event, m in events]
    balanced = [rows[("balanced", m)][f"{event}_moved"] / shards for event, m in events]
    optimum = [rows[("balanced", m)][f"{event}_moved"] /
               rows[("balanced", m)][f"{event}_ratio_to_optimum"] / shards
               for event, m in events]
    axes.bar([p - width for p in positions], hashmod, width,
             label="hashmod over members (Prometheus Operator)")
    axes.bar(positions, balanced, width, label="shardring")
    axes.bar([p + width for p in positions], optimum, width, label="optimum", color="0.6")
    axes.set_yscale("log")
    axes.set_ylabel("fraction of shards moved (log)")
    axes.set_xticks(positions, [f"{m:,} → {m + 1 if event == 'join' else m - 1:,}\n{event}"
                                for event, m in events], fontsize=8)
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)
    return figure


def memory_vs_rings(results: dict) -> Figure:
    """memory.json: the operator's RSS once each step of rings is Ready and quiet."""
    steps = results.get("steps")
    if not steps:
        raise NotDrawable("memory.json has no steps: run `make bench-memory`")
    figure, axes = _figure(f"Operator memory against rings ({results['instances_per_service']} "
                           f"members each; {results['per_ring_kb']:g} KB a ring)")
    axes.plot([s["rings"] for s in steps], [s["rss_mb"] for s in steps], marker="o",
              label="RSS, all rings Ready and quiet")
    target = results.get("targets", {}).get("rss_mb_at_1000_rings")
    if target:
        axes.axhline(target, color="tab:red", linestyle="--", linewidth=1,
                     label=f"target at 1,000 rings: {target} MB")
    axes.set_xlabel("rings")
    axes.set_ylabel("RSS (MB)")
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=8)
    return figure


def unscraped_per_reshard(results: dict) -> Figure:
    """agent.json: per scraper lost and per scraper returning, the seconds during which some
    target was scraped by no server, or by two (sampled every 50 ms)."""
    scrapers = results.get("scrapers", {})
    events = [(f"{kind} {n + 1}", e) for kind in ("loss", "join")
              for n, e in enumerate(scrapers.get(kind, {}).get("per_event") or [])]
    if not events:
        raise NotDrawable("agent.json has no per_event figures: run `make bench-agent`")
    figure, axes = _figure(f"{scrapers['scrapers']} real Prometheus servers, "
                           f"{scrapers['targets']} targets: one killed (loss), then back (join)")
    positions = list(range(len(events)))
    axes.bar([p - 0.2 for p in positions], [e["unscraped_s"] for _, e in events], 0.4,
             label="some target unscraped", color="tab:red")
    axes.bar([p + 0.2 for p in positions], [e["doubled_s"] for _, e in events], 0.4,
             label="some target scraped twice", color="tab:orange")
    interval = scrapers.get("scrape_interval_s")
    if interval:
        axes.axhline(interval, color="0.4", linestyle=":", linewidth=1,
                     label=f"one scrape interval ({interval} s)")
    axes.set_xticks(positions, [label for label, _ in events], rotation=60, fontsize=7)
    axes.set_ylabel("seconds")
    axes.legend(fontsize=8)
    return figure


def series_per_server(results: dict) -> Figure:
    """balance.json: each Prometheus server's own head series, with hashmod over the servers,
    the ring balanced by count, and the ring balanced by load."""
    ways = [("hashmod", "hashmod over the servers"), ("count", "balanced by count"),
            ("load", "balanced by load")]
    if any("head_series" not in results.get(way, {}) for way, _ in ways):
        raise NotDrawable("balance.json lacks head series: run `make bench-balance`")
    figure, axes = _figure(f"{results['scrapers']} real Prometheus servers, "
                           f"{results['targets']} targets (heavy-tailed series), "
                           f"K = {results['shards']}")
    width = 0.8 / len(ways)
    for n, (way, label) in enumerate(ways):
        found = results[way]["head_series"]
        positions = [i + (n - 1) * width for i in range(len(found["per_server"]))]
        axes.bar(positions, found["per_server"], width,
                 label=f"{label}: max/mean {found['max_over_mean']:.2f}")
    servers = len(results["load"]["head_series"]["per_server"])
    mean = sum(results["load"]["head_series"]["per_server"]) / servers
    axes.axhline(mean, color="0.3", linestyle=":", linewidth=1, label="mean")
    tallest = max(max(results[way]["head_series"]["per_server"]) for way, _ in ways)
    axes.set_ylim(0, tallest * 1.35)  # room for the legend above the bars
    axes.set_xticks(range(servers), [f"server {i + 1}" for i in range(servers)])
    axes.set_ylabel("prometheus_tsdb_head_series")
    axes.legend(fontsize=8)
    return figure


# picture -> (results file, how it is drawn)
PICTURES: dict[str, tuple[str, Callable[[dict], Figure]]] = {
    "propagation.png": ("sources.json", propagation_cdf),
    "moves.png": ("ring.json", moves_vs_hashmod),
    "memory.png": ("memory.json", memory_vs_rings),
    "unscraped.png": ("agent.json", unscraped_per_reshard),
    "balance.png": ("balance.json", series_per_server),
}


def save(figure: Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, format="png", metadata={"Software": None})
    plt.close(figure)


def draw(results_dir: Path, output_dir: Path) -> dict[str, str]:
    """Every picture whose results can be drawn; for each picture, "drawn" or why not."""
    outcome = {}
    for picture, (source, draw_one) in PICTURES.items():
        path = results_dir / source
        if not path.exists():
            outcome[picture] = f"not drawn: no {source}"
            continue
        try:
            figure = draw_one(json.loads(path.read_text()))
        except NotDrawable as why:
            outcome[picture] = f"not drawn: {why}"
            continue
        save(figure, output_dir / picture)
        outcome[picture] = "drawn"
    return outcome


def main() -> int:
    for picture, what in draw(RESULTS, RESULTS).items():
        print(f"{RESULTS / picture}: {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
