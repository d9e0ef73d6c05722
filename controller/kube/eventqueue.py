"""Events waiting to be posted: one at a time, each when no ring's request is in flight.

An Event is information; the rings' ConfigMaps and statuses are the product. Under a cold start or
churn every ring's write has an Event beside it, a third or more of the API server's work, so
Events wait for a quiet moment (``InFlight.quiet``) or until their patience runs out. They go one
at a time, each after its own quiet moment: a burst of them released at once would crowd the
rings' writes again.

While an Event waits, the same one again (same ring, type and reason: a ring resharded twice under
churn) joins it, as Kubernetes' own event recorder aggregates repeats: one Event with a count, the
first and the last time, and its messages, latest first (``kubectl describe``: "x2 over 40s").
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from controller.kube.inflight import InFlight

MESSAGE_LIMIT = 1024  # an Event's message is cut there (the API server's limit is about as long)


@dataclass(frozen=True)
class Waiting:
    """An Event (perhaps several of the same) not posted yet."""

    ring: Mapping[str, Any]  # the ShardRing's namespace, name and uid
    type: str  # Normal | Warning
    reason: str
    message: str
    first: str  # RFC 3339: when the first of them happened
    last: str  # and the latest
    count: int
    since: float  # monotonic: when the first of them came
    due: float  # monotonic: when it goes even if the rings' requests never pause


class EventQueue:
    def __init__(self, in_flight: InFlight, post: Callable[[Waiting], Awaitable[None]],
                 patience: float, monotonic: Callable[[], float] = time.monotonic):
        self._in_flight, self._post, self._patience = in_flight, post, patience
        self._monotonic = monotonic
        # By Event: what waits, the future its poster awaits, and its place in the heap.
        self._waiting: dict[tuple[str, ...], tuple[Waiting, asyncio.Future[None], int]] = {}
        self._heap: list[tuple[float, int, tuple[str, ...]]] = []  # (due, place, Event)
        self._places = itertools.count()
        self._poster: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    async def post(self, ring: Mapping[str, Any], kind: str, reason: str, message: str,
                   when: str) -> None:
        """Returns once the Event is posted (raising what the post raised), or at once if a
        later one of the same joined it (that one carries it, and its outcome).

        It goes in the first moment with no ring's request in flight, or ``patience`` after it
        came. A repeat gives the Event that much patience again, up to twice ``patience`` after
        the first: the rings resharded at maxDelay under churn resharded again as it stopped,
        and their Events, due then, crowded the last writes of every ring at once."""
        key = (*(str(ring.get(k)) for k in ("namespace", "name", "uid")), kind, reason)
        future = asyncio.get_running_loop().create_future()
        now = self._monotonic()
        earlier = self._waiting.get(key)
        if earlier is None:
            waiting = Waiting(ring, kind, reason, message[:MESSAGE_LIMIT], when, when, 1, now,
                              now + self._patience)
        else:
            before = earlier[0].message
            joined = message if before == message else f"{message}; before that: {before}"
            waiting = replace(earlier[0], message=joined[:MESSAGE_LIMIT], last=when,
                              count=earlier[0].count + 1,
                              due=min(earlier[0].since + 2 * self._patience,
                                      now + self._patience))
            _settle(earlier[1], None)
        place = next(self._places)
        self._waiting[key] = (waiting, future, place)
        heapq.heappush(self._heap, (waiting.due, place, key))
        if self._poster is None or self._poster.done():
            self._poster = asyncio.create_task(self._post_all())
        await future

    def _next(self) -> tuple[float, tuple[str, ...]] | None:
        """The Event due first, and when (places left by a repeat are dropped on the way)."""
        while self._heap:
            due, place, key = self._heap[0]
            entry = self._waiting.get(key)
            if entry is not None and entry[2] == place:
                return due, key
            heapq.heappop(self._heap)
        return None

    async def _post_all(self) -> None:
        future: asyncio.Future[None] | None = None  # the Event being posted
        try:
            while (head := self._next()) is not None:
                quiet = await self._in_flight.quiet(head[0] - self._monotonic())
                head = self._next()  # (one due sooner may have come meanwhile)
                if head is None or not quiet and head[0] > self._monotonic():
                    continue  # a repeat gave it more patience while the rings stayed busy
                heapq.heappop(self._heap)
                waiting, future, _ = self._waiting.pop(head[1])
                try:
                    await self._post(waiting)
                except Exception as error:  # noqa: BLE001 - its poster says what went wrong
                    _settle(future, error)
                else:
                    _settle(future, None)
        finally:
            # Cancelled (the operator exits): nobody waits for what will not be posted.
            for _waiting, left, _place in self._waiting.values():
                left.cancel()
            if future is not None:
                future.cancel()  # (nothing, if it was settled)
            self._waiting.clear()
            self._heap.clear()


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    with contextlib.suppress(asyncio.InvalidStateError):  # its poster went (cancelled)
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
