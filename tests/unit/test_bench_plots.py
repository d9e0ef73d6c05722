"""The benchmark pictures: drawn from the saved figures and only from them, the same bytes for
the same figures, shown in the README, and an old results file refused with the bench to run."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import plots  # noqa: E402

RESULTS = REPO / "bench" / "results"


def results(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def test_every_picture_is_drawn_from_the_checked_in_results(tmp_path):
    assert plots.draw(RESULTS, tmp_path) == {picture: "drawn" for picture in plots.PICTURES}
    for picture in plots.PICTURES:
        assert (tmp_path / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_same_figures_give_the_same_bytes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plots.draw(RESULTS, tmp_path / "a")
    plots.draw(RESULTS, tmp_path / "b")
    for picture in plots.PICTURES:
        assert (tmp_path / "a" / picture).read_bytes() == (tmp_path / "b" / picture).read_bytes()


def test_the_readme_shows_every_picture_and_each_is_checked_in():
    readme = (REPO / "README.md").read_text()
    for picture in plots.PICTURES:
        assert f"(bench/results/{picture})" in readme, picture
        assert (RESULTS / picture).exists(), picture


def test_the_propagation_curves_are_every_change_of_each_source():
    saved = results("sources.json")
    figure = plots.propagation_cdf(saved)
    lines = figure.axes[0].get_lines()
    assert [line.get_label().split()[0] for line in lines] == list(plots.SOURCES)
    for line, source in zip(lines, plots.SOURCES, strict=True):
        assert list(line.get_xdata()) == sorted(saved[source]["samples_ms"])
        assert line.get_ydata()[-1] == 1.0


def test_the_moves_are_the_engine_benchmarks_rows():
    saved = results("ring.json")
    bars = plots.moves_vs_hashmod(saved).axes[0].containers
    rows = {(r["algorithm"], r["members"]): r for r in saved["rows"] if r["shards"] == 16384}
    members = sorted(m for a, m in rows if a == "hashmod")
    for container, algorithm in zip(bars[:2], ("hashmod", "balanced"), strict=True):
        assert [bar.get_height() for bar in container] == \
            [rows[(algorithm, m)][f"{event}_moved"] / 16384
             for event in ("join", "leave") for m in members]


def test_memory_is_the_rss_of_each_step():
    saved = results("memory.json")
    line = plots.memory_vs_rings(saved).axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [s["rings"] for s in saved["steps"]]
    assert list(line.get_ydata()) == [s["rss_mb"] for s in saved["steps"]]


def test_unscraped_time_is_each_reshard_of_the_scrapers_bench():
    saved = results("agent.json")["scrapers"]
    unscraped, doubled = plots.unscraped_per_reshard({"scrapers": saved}).axes[0].containers
    events = saved["loss"]["per_event"] + saved["join"]["per_event"]
    assert [bar.get_height() for bar in unscraped] == [e["unscraped_s"] for e in events]
    assert [bar.get_height() for bar in doubled] == [e["doubled_s"] for e in events]


def test_the_balance_bars_are_each_servers_head_series_per_way():
    saved = results("balance.json")
    bars = plots.series_per_server(saved).axes[0].containers
    assert len(bars) == 3
    for container, way in zip(bars, ("hashmod", "count", "load"), strict=True):
        assert [bar.get_height() for bar in container] == saved[way]["head_series"]["per_server"]
        assert container.get_label().endswith(
            f"{saved[way]['head_series']['max_over_mean']:.2f}")


def test_results_without_raw_measurements_leave_the_picture_as_it_was(tmp_path):
    old = {k: v for k, v in results("sources.json").items()}
    for source in plots.SOURCES:
        old[source] = {k: v for k, v in old[source].items() if k != "samples_ms"}
    (tmp_path / "sources.json").write_text(json.dumps(old))
    shutil.copy(RESULTS / "propagation.png", tmp_path / "propagation.png")
    before = (tmp_path / "propagation.png").read_bytes()
    outcome = plots.draw(tmp_path, tmp_path)
    assert "make bench-sources" in outcome["propagation.png"]
    assert outcome["moves.png"] == "not drawn: no ring.json"
    assert (tmp_path / "propagation.png").read_bytes() == before
    with pytest.raises(plots.NotDrawable, match="bench-agent"):
        plots.unscraped_per_reshard({"scrapers": {"loss": {}, "join": {}}})
