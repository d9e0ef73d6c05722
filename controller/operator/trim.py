"""Freed memory given back to the system once a burst of work is over.

A cold start or a churn allocates and frees a great deal; glibc keeps what was freed in its heaps
(resident, holding nothing) until told otherwise. ``malloc_trim`` gives it back: it runs, off the
event loop, a few seconds after the first pass of a burst, and again after each later one while
work goes on. Without glibc (another C library, another system) it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable

QUIET = 5.0  # seconds after a pass


def glibc_trim() -> Callable[[], object] | None:
    """``malloc_trim(0)``, or None where there is no glibc."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


class Trimmer:
    """``worked()`` after each pass; the trim follows ``quiet`` seconds after the first of them
    (one pending at a time: a churn trims every few seconds, not after every pass)."""

    def __init__(self, quiet: float = QUIET, trim: Callable[[], object] | None = None):
        self._quiet = quiet
        self._trim = trim
        self._timer: asyncio.TimerHandle | None = None
        self._running: asyncio.Future[object] | None = None
        self.trims = 0

    def worked(self) -> None:
        if self._trim is None or self._timer is not None:
            return
        self._timer = asyncio.get_running_loop().call_later(self._quiet, self._due)

    def _due(self) -> None:
        self._timer = None
        if self._trim is None or (self._running is not None and not self._running.done()):
            return
        self._running = asyncio.get_running_loop().run_in_executor(None, self._trim)
        self.trims += 1

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
