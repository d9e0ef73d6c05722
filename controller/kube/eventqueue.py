"""Events waiting to be posted: one at a time, each when no ring's request is in flight.

An Event is information; the rings' ConfigMaps and statuses are the product. Under a cold start or
churn every ring's write has an Event beside it, a third or more of the API server's work, so
Events wait for a quiet moment (``InFlight.quiet``) or until their patience runs out, counted from
when the first of them happened. They go one at a time, each after its own quiet moment: a burst
of them released at once would crowd the rings' writes again.

While an Event waits, the same one again (same ring, type and reason: a ring resharded twice under
churn) joins it, as Kubernetes' own event recorder aggregates repeats: one Event with a count, the
first and the last time, and its messages, latest first (``kubectl describe``: "x2 over 40s").
"""

from __future__ import annotations

import asyncio
import contextlib
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
    since: float  # monotonic: when the first of them came (its patience counts from there)


class EventQueue:
    def __init__(self, in_flight: InFlight, post: Callable[[Waiting], Awaitable[None]],
                 patience: float, monotonic: Callable[[], float] = time.monotonic):
        self._in_flight, self._post, self._patience = in_flight, post, patience
        self._monotonic = monotonic
        # Oldest first (a repeat takes the place of the one it joins); with each, the future
        # its poster awaits.
        self._waiting: dict[tuple[str, ...], tuple[Waiting, asyncio.Future[None]]] = {}
        self._poster: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    async def post(self, ring: Mapping[str, Any], kind: str, reason: str, message: str,
                   when: str) -> None:
        """Returns once the Event is posted (raising what the post raised), or at once if a
        later one of the same joined it (that one carries it, and its outcome)."""
        key = (*(str(ring.get(k)) for k in ("namespace", "name", "uid")), kind, reason)
        future = asyncio.get_running_loop().create_future()
        earlier = self._waiting.get(key)
        if earlier is None:
            waiting = Waiting(ring, kind, reason, message[:MESSAGE_LIMIT], when, when, 1,
                              self._monotonic())
        else:
            before = earlier[0].message
            joined = message if before == message else f"{message}; before that: {before}"
            waiting = replace(earlier[0], message=joined[:MESSAGE_LIMIT], last=when,
                              count=earlier[0].count + 1)
            _settle(earlier[1], None)
        self._waiting[key] = (waiting, future)
        if self._poster is None or self._poster.done():
            self._poster = asyncio.create_task(self._post_all())
        await future

    async def _post_all(self) -> None:
        while self._waiting:
            oldest, _ = next(iter(self._waiting.values()))
            await self._in_flight.quiet(oldest.since + self._patience - self._monotonic())
            key = next(iter(self._waiting))
            waiting, future = self._waiting.pop(key)
            try:
                await self._post(waiting)
            except Exception as error:  # noqa: BLE001 - its poster says what went wrong
                _settle(future, error)
            else:
                _settle(future, None)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    with contextlib.suppress(asyncio.InvalidStateError):  # its poster went (cancelled)
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
