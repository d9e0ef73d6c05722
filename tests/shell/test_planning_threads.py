"""The planning threads: plans run there and come back (or fail) through the event loop, queued
plans are dropped on shutdown, and a plan still running never holds the operator's exit up."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from controller.operator.planning import PlanningThreads

REPO = Path(__file__).resolve().parents[2]


def test_results_and_errors_come_back_through_the_loop():
    threads = PlanningThreads(2)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        with pytest.raises(ZeroDivisionError):
            await loop.run_in_executor(threads, lambda: 1 // 0)
        return await loop.run_in_executor(threads, sum, [1, 2, 3])
    try:
        assert asyncio.run(main()) == 6
    finally:
        threads.shutdown()


def test_shutdown_cancels_what_has_not_started():
    threads = PlanningThreads(1)
    started, release = threading.Event(), threading.Event()
    running = threads.submit(lambda: (started.set(), release.wait(10)))
    started.wait(10)
    queued = threads.submit(sum, [1])
    threads.shutdown(wait=False, cancel_futures=True)
    release.set()
    assert queued.cancelled() and running.result(10) == (None, True)


def test_a_plan_still_running_does_not_hold_the_exit_up():
    program = ("import sys, time; sys.path.insert(0, sys.argv[1]); "
               "from controller.operator.planning import PlanningThreads; "
               "PlanningThreads(1).submit(time.sleep, 600); print('leaving')")
    # A ThreadPoolExecutor here is joined at exit: this would run for ten minutes.
    done = subprocess.run([sys.executable, "-c", program, str(REPO)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "leaving\n"


def test_nothing_is_taken_after_shutdown():
    threads = PlanningThreads(1)
    threads.shutdown()
    with pytest.raises(RuntimeError):
        threads.submit(sum, [1])
