"""Run the operator under tracemalloc; on SIGUSR1 write where its memory is to $MEMPROFILE_OUT.

    MEMPROFILE_OUT=/tmp/mem.txt python bench/memprofile.py run --standalone

The report lists the traced Python heap by file and by allocation site, live objects by type, and
the process RSS next to the traced total (the rest is interpreter, libraries and allocator slack).
tracemalloc itself costs memory and time: RSS figures from such a run are not the operator's.
"""

from __future__ import annotations

import gc
import os
import runpy
import signal
import sys
import tracemalloc
from collections import Counter
from pathlib import Path


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def report(limit: int = 25) -> str:
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)])
    traced = sum(stat.size for stat in snapshot.statistics("filename"))
    lines = [f"rss_mb {_rss_mb():.1f}  traced_mb {traced / 2**20:.1f}", "", "## by file"]
    lines += [f"{s.size / 2**20:8.2f} MB {s.count:8d}  {s.traceback[0].filename}"
              for s in snapshot.statistics("filename")[:limit]]
    lines += ["", "## by line"]
    lines += [f"{s.size / 2**20:8.2f} MB {s.count:8d}  {s.traceback[0]}"
              for s in snapshot.statistics("lineno")[:limit]]
    lines += ["", "## by traceback (top 10)"]
    for stat in snapshot.statistics("traceback")[:10]:
        lines.append(f"{stat.size / 2**20:8.2f} MB {stat.count:8d}")
        lines += [f"        {frame}" for frame in stat.traceback.format()[-16:]]
    lines += ["", "## live objects by type"]
    counts = Counter(type(o).__name__ for o in gc.get_objects())
    lines += [f"{n:9d}  {name}" for name, n in counts.most_common(limit)]
    return "\n".join(lines) + "\n"


def main() -> None:
    tracemalloc.start(int(os.environ.get("MEMPROFILE_FRAMES", "4")))
    out = Path(os.environ.get("MEMPROFILE_OUT", "memprofile.txt"))
    signal.signal(signal.SIGUSR1, lambda *_: out.write_text(report()))
    sys.argv = ["controller", *sys.argv[1:]]
    runpy.run_module("controller", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
