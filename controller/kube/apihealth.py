"""Whether the Kubernetes API answers, said once when it stops and once when it is back.

An API server outage is a normal event: every ring keeps what it published, kopf's watches and
our passes retry by themselves. Left alone, each of them would say so on every attempt (kopf
logs "Request attempt N failed; will retry" at ERROR for each watch and write, and a failed pass
logged a traceback): tens of ERROR lines for a ten-second restart. One ``ApiHealth`` per operator
hears about failures and successes from our Kubernetes adapter and from kopf's retry lines, and
says one line for each change.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("shardring")

_KOPF_RETRY = re.compile(r"^Request attempt #?\d+(/\d+)? failed; will retry: .* -> "
                         r"(?P<error>Client\w*Error|ServerDisconnectedError|TimeoutError|"
                         r"Connection\w*Error|"
                         # what a restarted API server answers until it is ready (a 500, a
                         # failing webhook say, is not an outage)
                         r"APITooManyRequestsError(?=\('storage is \(re\)initializing)|"
                         r"APIServerError(?=.*'code': 50[234]\b))")


class ApiUnreachable(Exception):
    """The Kubernetes API did not answer (connection refused or lost, a 5xx, a timeout)."""


PROBE_EVERY = 2.0  # seconds between asking the API server whether it is back
# A restarted API server answers some requests before others (GET /version before its storage
# is ready: kopf's watches then get "storage is (re)initializing"): a failure this soon after it
# came back continues the outage already said, without a second pair of lines.
SETTLE = 10.0
# What a server whose watch cache is still filling answers: the operator started at the same time
# as its API server, or just after a CRD was created (`make cluster`, then `make run`).
WARMING_UP = "APITooManyRequestsError"


class ApiHealth:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._started = clock()
        self.down_since: float | None = None
        self._back_at: float | None = None  # when it was last said to be back
        self._said = False  # the outage in progress was announced
        self._warming = False  # ... or is, so far, the start's watch cache warming up
        # Set while the operator runs: a cheap request (GET /version) and the loop it runs on.
        # With it, "reachable again" is said even when nothing else would ask (no rings, or
        # kopf's watches resuming without an event), and the next outage is said again.
        self.probe: Callable[[], Awaitable[bool]] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._probing: asyncio.Future[None] | None = None

    def failed(self, why: str) -> None:
        now = self._clock()
        if self.down_since is not None:
            if not self._said and (now - self.down_since >= SETTLE or
                                   (self._warming and why != WARMING_UP)):
                self._say_down(why)  # not a brief relapse (or a warm-up) after all
            return
        relapse = self._back_at is not None and now - self._back_at < SETTLE
        # A cache warming up as the operator starts is no outage either (said if it lasts).
        self._warming = why == WARMING_UP and now - self._started < SETTLE
        self.down_since = now
        self._said = False
        if not (relapse or self._warming):
            self._say_down(why)
        if self.probe is not None and self.loop is not None and not self.loop.is_closed():
            # (kopf's log lines may come from another thread than the loop's)
            self.loop.call_soon_threadsafe(self._start_probing)

    def started(self) -> None:
        """The operator's watches start now: a warm-up's 429s are expected for SETTLE."""
        self._started = self._clock()

    def _say_down(self, why: str) -> None:
        self._said = True
        if why == WARMING_UP:  # (it answers: what it answers is "not yet")
            why += ": its storage is (re)initializing, as after a restart or a CRD created again"
        log.warning("the Kubernetes API cannot be reached (%s); every ring keeps what it "
                    "published, and the operator retries quietly", why)

    def _start_probing(self) -> None:
        if self._probing is None or self._probing.done():
            self._probing = asyncio.ensure_future(self._until_back())

    async def _until_back(self) -> None:
        assert self.probe is not None
        while self.down_since is not None:
            await asyncio.sleep(PROBE_EVERY)
            sent = self._clock()
            try:
                if await self.probe():
                    self.answered(sent)
            except Exception:  # noqa: BLE001 - still down: ask again
                pass

    def stop(self) -> None:
        if self._probing is not None:
            self._probing.cancel()

    def now(self) -> float:
        """When a request is sent, by this object's clock (see ``answered``)."""
        return self._clock()

    def answered(self, sent: float | None = None) -> None:
        """The API answered. ``sent``: when that request went out, if known; an answer to a
        request sent before the outage began (one in flight as the server went away) says
        nothing about its end."""
        if sent is not None and self.down_since is not None and sent < self.down_since:
            return
        if self.down_since is not None:
            if self._said:
                log.info("the Kubernetes API is reachable again (after %.1f s)",
                         self._clock() - self.down_since)
                self._back_at = self._clock()
            self.down_since = None

    def quiet_kopf_retries(self) -> logging.Filter:
        """A filter for the log handlers: kopf's per-attempt retry lines become this object's
        single line (kopf retries them by itself either way)."""
        health = self

        class QuietRetries(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                if not record.name.startswith("kopf"):
                    return True
                found = _KOPF_RETRY.match(record.getMessage())
                if found is None:
                    return True
                health.failed(found.group("error"))
                return False  # (others, such as a 403 or an escalation, stay)
        return QuietRetries()
