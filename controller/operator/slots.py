"""The operator's pass slots: how many rings talk to the API server at once, ConfigMaps first.

A ring's ConfigMap is what its workloads read; its status is what people and tools read about it.
When a burst of changes ends, a thousand rings publish at once and the API server's writes are
what they all wait for: a status then waits for a slot no pass is waiting for, so every ring's
new ConfigMap goes out before the statuses that describe them (the worker holds the status, and
a newer pass replaces it). A pass waits behind no status that is waiting for its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class PassSlots:
    def __init__(self, size: int) -> None:
        self._free = size
        # Waiting, first come first served: passes, and (only when no pass waits) statuses.
        self._passes: deque[asyncio.Future[None]] = deque()
        self._statuses: deque[asyncio.Future[None]] = deque()

    @property
    def contended(self) -> bool:
        """A pass is waiting for a slot."""
        return bool(self._passes)

    @contextlib.asynccontextmanager
    async def passing(self) -> AsyncIterator[None]:
        """A slot for a pass, before any status waiting for one."""
        if self._free and not self._passes:
            self._free -= 1
        else:
            future = asyncio.get_running_loop().create_future()
            self._passes.append(future)
            try:
                await future
            except asyncio.CancelledError:
                self._withdraw(self._passes, future)
                raise
        try:
            yield
        finally:
            self.release()

    async def for_status(self, woken: asyncio.Event, timeout: float | None) -> bool:
        """A slot no pass is waiting for: True once held (the caller releases it); False when
        ``woken`` is set or ``timeout`` seconds pass first."""
        if self._free and not self._passes and not self._statuses:
            self._free -= 1
            return True
        future = asyncio.get_running_loop().create_future()
        self._statuses.append(future)
        wake = asyncio.ensure_future(woken.wait())
        try:
            await asyncio.wait((future, wake), timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self._withdraw(self._statuses, future)
            raise
        finally:
            wake.cancel()
        if future.done():
            return True
        self._withdraw(self._statuses, future)
        return False

    def release(self) -> None:
        self._free += 1
        while self._free and (self._passes or self._statuses):
            future = (self._passes or self._statuses).popleft()
            if not future.cancelled():  # (its task was cancelled: it is on its way out)
                self._free -= 1
                future.set_result(None)

    def _withdraw(self, queue: deque[asyncio.Future[None]], future: asyncio.Future[None]) -> None:
        """A waiter that gives up: out of the queue, or, if handed a slot meanwhile, it gives
        the slot back."""
        if future.done() and not future.cancelled():
            self.release()
            return
        future.cancel()
        with contextlib.suppress(ValueError):  # (a release may have dropped it already)
            queue.remove(future)
