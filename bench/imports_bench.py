"""What an operator weighs before it serves any ring: the RSS its imports add, in a fresh
interpreter, piece by piece (the official Kubernetes client, kopf with aiohttp and pydantic,
numpy, the operator's own modules). Writes bench/results/imports.{json,md}.

    .venv/bin/python bench/imports_bench.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
STEPS = [("kubernetes client", "kubernetes.client"), ("kopf (aiohttp, pydantic)", "kopf"),
         ("numpy", "numpy"), ("the operator (py-consul, prometheus_client, ...)",
                              "controller.operator.handlers")]
PROBE = """
import importlib, json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
figures = [("interpreter", rss())]
for name, module in json.loads(sys.argv[1]):
    importlib.import_module(module)
    figures.append((name, rss()))
print(json.dumps(figures))
"""


def main() -> int:
    runs = [json.loads(subprocess.run([sys.executable, "-c", PROBE, json.dumps(STEPS)],
                                      check=True, capture_output=True, text=True).stdout)
            for _ in range(3)]
    totals = sorted(run[-1][1] for run in runs)
    median = next(run for run in runs if run[-1][1] == totals[1])
    added = {name: round(mb - (median[i - 1][1] if i else 0), 1)
             for i, (name, mb) in enumerate(median)}
    results = {"rss_mb_after_imports": round(totals[1], 1), "added_mb": added,
               "runs_total_mb": [round(t, 1) for t in totals]}
    print(json.dumps(results, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "imports.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / "imports.md").write_text(
        "| part | RSS added (MB) |\n|---|---|\n" +
        "".join(f"| {name} | {mb} |\n" for name, mb in added.items()) +
        f"| **total** | **{results['rss_mb_after_imports']}** |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
