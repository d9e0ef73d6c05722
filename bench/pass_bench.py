"""The time of one pass for an unchanged ring: the ring is published, then woken again with the
same membership (an acknowledgement, a periodic recheck). A pass is prepare (the spec) and
plan_pass (membership, decision, status) with the ConfigMap it wrote already seen, as the worker
runs it. Rings of 100 and 1,000 Consul members, 256 and 4,096 shards.

Runs against whichever layout the checkout has (so that one run compares two checkouts side by
side: ``bench/pass_bench.py --other /path/to/old/checkout`` runs the same cases there too, each in
its own process, alternating). Writes bench/results/pass.{json,md}.

    .venv/bin/python bench/pass_bench.py [--other DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
CASES = [(100, 256), (1000, 256), (1000, 4096)]  # (members, shards)
PASSES = 30


def measure(members: int, shards: int) -> dict[str, float]:
    """In this process's checkout: seconds per pass (median, p90) over PASSES passes."""
    try:  # the layout since #22
        from controller.core.planner import Gathered, plan_pass, prepare
        try:
            from controller.core.memory import RingMemory, Verified
        except ImportError:
            from controller.core.planner import Verified  # type: ignore[attr-defined,no-redef]
        from controller.core.source_state import Snapshot, SourceState
        from controller.core.views import RingObject, view_from_dict
        from controller.sources.consul.decode import instances_from_health as decode
        from controller.sources.specs import read_spec
        kinds: tuple[object, ...] = (read_spec,)  # how the planner reads a spec
    except ImportError:
        kinds = ()  # the flat layout before it
        from controller.consul_watch import _canonical as decode  # type: ignore[no-redef]
        from controller.planner import Gathered, RingObject, Verified, plan_pass, prepare  # type: ignore[no-redef]
        from controller.sources import Snapshot, SourceState  # type: ignore[no-redef]
        from controller.views import view_from_dict  # type: ignore[no-redef]
    raw = [{"Node": {"Node": f"node-{i // 50}", "Address": "10.0.0.1"},
            "Service": {"ID": f"web-{i}", "Address": f"10.1.{i // 250}.{i % 250}", "Port": 9100,
                        "Weights": {"Passing": 1, "Warning": 1}},
            "Checks": [{"Status": "passing"}]} for i in range(members)]
    instances = decode(raw)
    spec = {"service": {"name": "web"}, "shards": shards,
            "stabilization": {"window": "0s", "maxDelay": "0s"}}
    connections = {("consul", "default"): _access()}
    ring = RingObject("bench", "r", "uid", 1, spec, {})
    config = prepare(ring, connections, "t", *kinds).config
    source = SourceState(Snapshot(1, instances, 0.0))
    first = plan_pass(ring, config, Gathered(None, source), 1.0, "t")
    body = {"metadata": {"name": first.configmap.name, "resourceVersion": "1",
                         "labels": dict(first.configmap.labels),
                         "ownerReferences": [dict(first.configmap.owner)]},
            "data": dict(first.configmap.data)}
    view = view_from_dict(body)
    ring = RingObject("bench", "r", "uid", 1, spec, first.status)
    remembered = {"last_published": first.configmap.data["ring.json"], "last_publish": 1.0,
                  "verified": Verified(view.name, "1", False)}
    if "memory" in Gathered.__dataclass_fields__:  # one value since #22, carried whole
        gathered = Gathered(view, source, memory=RingMemory(
            **remembered, last_published_ring=first.published))
    else:
        carried = {"last_published_ring": first.published} \
            if "last_published_ring" in Gathered.__dataclass_fields__ else {}
        gathered = Gathered(view, source, **remembered, **carried)
    times = []
    for n in range(PASSES):
        started = time.perf_counter()
        config = prepare(ring, connections, "t", *kinds).config
        plan = plan_pass(ring, config, gathered, 100.0 + n, "t")
        times.append(time.perf_counter() - started)
        assert plan.configmap is None and plan.change is None, "the ring changed"
    times.sort()
    return {"median_ms": round(statistics.median(times) * 1000, 3),
            "p90_ms": round(times[int(len(times) * 0.9)] * 1000, 3)}


def _access() -> Any:
    try:
        from controller.core.limits import Access
    except ImportError:
        from controller.settings import Access  # type: ignore[no-redef]
    return Access()


def run_in(checkout: Path, members: int, shards: int) -> dict[str, float]:
    code = (f"import sys; sys.path.insert(0, {str(checkout)!r}); "
            f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
            f"import json, pass_bench; print(json.dumps(pass_bench.measure({members}, {shards})))")
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    out = subprocess.run([sys.executable, "-c", code], cwd=checkout, env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--other", type=Path, help="another checkout to measure side by side")
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[1]
    rows = []
    for members, shards in CASES:
        row: dict[str, Any] = {"members": members, "shards": shards}
        for _round in range(3):  # alternate, so both see the same machine
            for label, checkout in (("this", here), ("other", args.other)):
                if checkout is None:
                    continue
                got = run_in(checkout, members, shards)
                row.setdefault(label, []).append(got["median_ms"])
        for label in ("this", "other"):
            if label in row:
                row[label] = min(row[label])  # the least disturbed of three runs
        rows.append(row)
        print(row, flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pass.json").write_text(json.dumps(
        {"passes_per_run": PASSES, "other": str(args.other) if args.other else None,
         "rows": rows}, indent=2) + "\n")
    lines = ["| members | shards | this checkout (ms per pass) | other (ms per pass) |",
             "|---|---|---|---|"]
    lines += [f"| {r['members']} | {r['shards']} | {r['this']} | {r.get('other', '—')} |"
              for r in rows]
    (RESULTS / "pass.md").write_text(
        "One pass of an unchanged ring (prepare + plan_pass), median of "
        f"{PASSES} passes, least of 3 runs (`bench/pass_bench.py`).\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
