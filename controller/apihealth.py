"""Whether the Kubernetes API answers, said once when it stops and once when it is back.

An API server outage is a normal event: every ring keeps what it published, kopf's watches and
our passes retry by themselves. Left alone, each of them would say so on every attempt (kopf
logs "Request attempt N failed; will retry" at ERROR for each watch and write, and a failed pass
logged a traceback): tens of ERROR lines for a ten-second restart. One ``ApiHealth`` per operator
hears about failures and successes from our Kubernetes adapter and from kopf's retry lines, and
says one line for each change.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

log = logging.getLogger("shardring")

_KOPF_RETRY = re.compile(r"^Request attempt #?\d+(/\d+)? failed; will retry: .* -> "
                         r"(?P<error>Client\w*Error|ServerDisconnectedError|TimeoutError|"
                         r"APIServerError|Connection\w*Error|"
                         # what a restarted API server answers until its storage is ready
                         r"APITooManyRequestsError(?=\('storage is \(re\)initializing))")


class ApiUnreachable(Exception):
    """The Kubernetes API did not answer (connection refused or lost, a 5xx, a timeout)."""


class ApiHealth:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.down_since: float | None = None

    def failed(self, why: str) -> None:
        if self.down_since is None:
            self.down_since = self._clock()
            log.warning("the Kubernetes API cannot be reached (%s); every ring keeps what it "
                        "published, and the operator retries quietly", why)

    def answered(self) -> None:
        if self.down_since is not None:
            log.info("the Kubernetes API is reachable again (after %.1f s)",
                     self._clock() - self.down_since)
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
