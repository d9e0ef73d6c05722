"""Where a pass's plan is computed: inline, or in the planning thread for a ring big enough that
planning it would stall every other ring's watches (measured: bench/results/offloop.md)."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from controller.core.limits import Limits
from controller.core.planner import Gathered, PassPlan, plan_pass
from controller.core.ring import Algorithm
from controller.core.source_state import SourceState
from controller.core.spec import RingConfig
from controller.core.views import RingObject

# Planning a ring costs about members x (shards x replication + virtual nodes); above this it runs
# in a planning thread, so one huge ring cannot stall every other ring's watches (measured:
# bench/results/offloop.md).
HEAVY_PLAN = 500_000


async def plan_off_loop(ring: RingObject, config: RingConfig, gathered: Gathered, now: float,
                        now_text: str, limits: Limits, planning: Executor | None) -> PassPlan:
    """``now`` monotonic, ``now_text`` the wall clock; ``planning``: None plans inline."""
    if planning is not None and plan_cost(config, gathered.source) >= HEAVY_PLAN:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(planning, plan_pass, ring, config, gathered, now,
                                          now_text, limits)
    return plan_pass(ring, config, gathered, now, now_text, limits)


def plan_cost(config: RingConfig, source: SourceState | None) -> int:
    """About the work of planning the ring: members x (shards x replication + virtual nodes)."""
    members = len(source.snapshot.instances) if source and source.snapshot else 0
    spec = config.ring_spec
    vnodes = spec.virtual_nodes if spec.algorithm is Algorithm.CONSISTENT else 0
    return members * (spec.shards * spec.replication + vnodes)


class PlanningThreads(Executor):
    """A few daemon threads for heavy plans. A plan still running when the operator stops is
    abandoned with the process (nobody would read its result): a ThreadPoolExecutor's threads are
    joined at interpreter exit, so one long plan held the exit up for as long as it ran."""

    def __init__(self, workers: int, name: str = "planner"):
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...],
                                            dict[str, Any]] | None] = queue.SimpleQueue()
        self._closed = False
        self._threads = [threading.Thread(target=self._run, name=f"{name}_{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._closed:
            raise RuntimeError("the planning threads are shut down")
        future: Future[Any] = Future()
        self._work.put((future, fn, args, kwargs))
        return future

    def _run(self) -> None:
        while (item := self._work.get()) is not None:
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as error:  # noqa: BLE001 - handed to whoever awaits the plan
                future.set_exception(error)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True
        if cancel_futures:
            while True:
                try:
                    item = self._work.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in self._threads:
            self._work.put(None)
        if wait:
            for thread in self._threads:
                thread.join()
