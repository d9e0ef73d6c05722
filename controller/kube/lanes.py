"""The rings' requests to the API server: at most ``width`` in flight, the most urgent first.

A ConfigMap is what the workloads read; a ring's status reports on it. When many rings publish at
once (a cold start, the end of a churn), the API server's speed is what they all wait for, and a
ConfigMap queued behind other rings' status patches waits for writes that change nothing the
workloads see. So a waiting ConfigMap write (or a read a pass needs) goes before a waiting status
patch; a status patch that has waited ``patience`` seconds goes as if urgent, so none waits
forever. Events, information only, wait for a moment with nothing in flight or waiting at all
(``quiet``): a cold start's thousand Events no longer compete with the rings' writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

URGENT, REPORT = 0, 1


class Lanes:
    def __init__(self, width: int, patience: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.width, self.patience, self._clock = width, patience, clock
        self.in_flight = 0
        self._waiting: tuple[deque[tuple[float, asyncio.Future[None]]], ...] = (deque(), deque())
        self._quiet = asyncio.Event()
        self._quiet.set()

    @property
    def waiting(self) -> int:
        return sum(map(len, self._waiting))

    @contextlib.asynccontextmanager
    async def slot(self, lane: int = URGENT) -> AsyncIterator[None]:
        """One request in flight, once a slot is free and no more urgent request waits."""
        self._quiet.clear()
        self._purge()
        if self.in_flight < self.width and not self.waiting:
            self.in_flight += 1
        else:
            handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting[lane].append((self._clock(), handed))
            try:
                await handed  # the slot is handed over by the request that frees it
            except asyncio.CancelledError:
                if handed.done() and not handed.cancelled():
                    self._release()  # handed over just as it was cancelled: pass it on
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        following = self._next()
        if following is not None:
            following.set_result(None)  # the slot goes straight to it: in_flight stays
            return
        self.in_flight -= 1
        if not self.in_flight:
            self._quiet.set()

    def _purge(self) -> None:
        for queue in self._waiting:
            while queue and queue[0][1].done():  # cancelled while waiting
                queue.popleft()

    def _next(self) -> asyncio.Future[None] | None:
        self._purge()
        urgent, report = self._waiting
        if report and (not urgent or self._clock() - report[0][0] >= self.patience):
            return report.popleft()[1]
        return urgent.popleft()[1] if urgent else None

    async def quiet(self, patience: float) -> None:
        """Returns once nothing is in flight or waiting, or after ``patience`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._quiet.wait(), patience)
