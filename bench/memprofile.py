"""Run the operator under tracemalloc; on SIGUSR1 write where its memory is to $MEMPROFILE_OUT.

    MEMPROFILE_OUT=/tmp/mem.txt python bench/memprofile.py run --standalone

The report gives RSS, glibc's and pymalloc's statistics (memory in use against memory kept free),
live objects by type and, unless MEMPROFILE_FRAMES=0, the traced Python heap by file and by
allocation site. tracemalloc itself costs memory and time (a 1000-ring start takes minutes): RSS
figures from a traced run are not the operator's; MEMPROFILE_FRAMES=0 runs at full speed.
"""

from __future__ import annotations

import ctypes
import gc
import os
import runpy
import signal
import sys
import tempfile
import tracemalloc
from collections import Counter
from pathlib import Path


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def allocator() -> list[str]:
    """glibc's view (in use vs free but kept) and pymalloc's arenas (small Python objects)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    lines = [f"glibc: heap {info.arena / 2**20:.1f} MB, in use {info.uordblks / 2**20:.1f} MB, "
             f"free but kept {info.fordblks / 2**20:.1f} MB, mmapped {info.hblkhd / 2**20:.1f} MB"]
    with tempfile.TemporaryFile("w+") as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        lines += [line.rstrip() for line in capture if line.startswith(
            ("# arenas allocated current", "# bytes in allocated blocks", "# bytes in available",
             "Total ", "# bytes lost to"))]
    return lines


def by_type(limit: int) -> list[str]:
    counts: Counter = Counter()
    sizes: Counter = Counter()
    for thing in gc.get_objects():
        name = type(thing).__name__
        counts[name] += 1
        sizes[name] += sys.getsizeof(thing)
    return [f"{sizes[name] / 2**20:8.2f} MB {counts[name]:9d}  {name}"
            for name, _ in sizes.most_common(limit)]


def report(limit: int = 25) -> str:
    gc.collect()
    lines = [f"rss_mb {_rss_mb():.1f}", *allocator(), "",
             "## gc-tracked objects by type (shallow sizes; str and bytes are not tracked)",
             *by_type(limit)]
    if not tracemalloc.is_tracing():
        return "\n".join(lines) + "\n"
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)])
    traced = sum(stat.size for stat in snapshot.statistics("filename"))
    lines += ["", f"traced_mb {traced / 2**20:.1f}", "", "## by file"]
    lines += [f"{s.size / 2**20:8.2f} MB {s.count:8d}  {s.traceback[0].filename}"
              for s in snapshot.statistics("filename")[:limit]]
    lines += ["", "## by line"]
    lines += [f"{s.size / 2**20:8.2f} MB {s.count:8d}  {s.traceback[0]}"
              for s in snapshot.statistics("lineno")[:limit]]
    lines += ["", "## by traceback (top 10)"]
    for stat in snapshot.statistics("traceback")[:10]:
        lines.append(f"{stat.size / 2**20:8.2f} MB {stat.count:8d}")
        lines += [f"        {frame}" for frame in stat.traceback.format()[-16:]]
    return "\n".join(lines) + "\n"


def main() -> None:
    frames = int(os.environ.get("MEMPROFILE_FRAMES", "4"))
    if frames:  # 0: allocator and object statistics only, at full speed
        tracemalloc.start(frames)
    out = Path(os.environ.get("MEMPROFILE_OUT", "memprofile.txt"))
    signal.signal(signal.SIGUSR1, lambda *_: out.write_text(report()))
    sys.argv = ["controller", *sys.argv[1:]]
    # The checkout this file is in (as `python -m controller` from it would), not whichever one
    # the virtualenv's editable install points at.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    runpy.run_module("controller", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
