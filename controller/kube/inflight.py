"""The rings' requests in flight, and a wait for a moment with none.

Events are information; the rings' ConfigMaps and statuses are the product. When a thousand rings
start at once, a thousand Events posted beside their writes are a third more work for the API
server, which is what a cold start waits for: an Event waits for a moment when no ring's request
is in flight (or its patience runs out), so the rings are Ready first and their Events follow
(eventqueue.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class InFlight:
    def __init__(self) -> None:
        self._count = 0
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._stopped = False

    @property
    def count(self) -> int:
        return self._count

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """Around one of the rings' requests (on the event loop's side)."""
        self._count += 1
        if not self._stopped:
            self._quiet.clear()
        try:
            yield
        finally:
            self._count -= 1
            if not self._count:
                self._quiet.set()

    def stop_waiting(self) -> None:
        """The operator is exiting: whatever waits goes now, and nothing waits any more."""
        self._stopped = True
        self._quiet.set()

    async def quiet(self, patience: float) -> bool:
        """Returns when no request is in flight (True: also once the operator exits), or after
        ``patience`` seconds (False). (Woken by a moment with none, it looks again: another may
        have started before it ran.)"""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        while self._count and not self._stopped and loop.time() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), deadline - loop.time())
        return not self._count or self._stopped
