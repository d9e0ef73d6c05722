"""The worker's clock: monotonic time for deadlines, the wall clock for status fields, and timers.
Injected, so fast tests step a fake clock and never sleep real time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from controller.core.rfc3339 import now_rfc3339


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> str:
        """The time for status fields, RFC 3339 in UTC."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` after ``delay`` seconds of this clock (on the event loop)."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> str:
        return now_rfc3339()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)
