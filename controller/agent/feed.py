"""One ConfigMap followed through the Kubernetes API: a list (by name, so RBAC's resourceNames
can limit the agent to this one ConfigMap), then a watch from the list's resourceVersion, resumed
from the last version seen when the server ends it; a new listing after a failure or when the API
server says that version is gone (410).

Runs in a thread of its own (the official client is synchronous) and hands what it sees to the
agent. Every watch has a client-side read timeout as well as the server-side one: a watch that a
proxy or a load balancer drops silently ends within seconds instead of never.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch

log = logging.getLogger("shardring.agent")
SERVER_TIMEOUT = 60  # seconds a watch request lasts before the server ends it
READ_TIMEOUT = SERVER_TIMEOUT + 15  # nothing at all for this long: the watch is dead
RETRY_MIN, RETRY_MAX = 0.5, 30.0


@dataclass(frozen=True)
class Seen:
    """The ConfigMap as it now is (None: it does not exist)."""

    body: dict[str, Any] | None


@dataclass(frozen=True)
class Unreachable:
    """The API server did not answer; the message says how (never a credential)."""

    message: str


Update = Seen | Unreachable


def backoff(failures: int, jitter: float) -> float:
    """Seconds to wait after ``failures`` failures in a row: doubling from RETRY_MIN up to
    RETRY_MAX, less up to half of it (``jitter`` in [0, 1)) so that agents cut off together do
    not all come back in the same instant."""
    return min(RETRY_MAX, RETRY_MIN * 2.0 ** min(failures - 1, 16)) * (1 - jitter / 2)


class ConfigMapFeed:
    def __init__(self, core: k8s.CoreV1Api, namespace: str, name: str,
                 deliver: Callable[[Update], None],
                 jitter: Callable[[], float] = random.random):
        self.core: Any = core  # lists with _preload_content=False: raw JSON, not the models
        self.namespace, self.name = namespace, name
        self.deliver = deliver
        self.jitter = jitter
        self._selector = f"metadata.name={name}"

    def run(self, stop: threading.Event) -> None:
        failures = 0
        self.version: str | None = None  # the last resourceVersion seen: a watch resumes here
        while not stop.is_set():
            try:
                if self.version is None:
                    self.version = self._list()
                self._watch(stop)
                failures = 0
            except k8s.ApiException as error:
                if error.status == 410:  # too old: the ConfigMap as it is now, then go on
                    self.version = None
                    continue
                failures += 1
                self.deliver(Unreachable(f"HTTP {error.status} {error.reason}"))
            except Exception as error:  # noqa: BLE001 - any failure: report, back off, retry
                failures += 1
                self.deliver(Unreachable(type(error).__name__ + _reason(error)))
            if failures:
                # Start again from a listing: it shows the ConfigMap as it is now (nothing
                # older is replayed) and, once it answers, that the API is back.
                self.version = None
                stop.wait(backoff(failures, self.jitter()))

    def _list(self) -> str:
        reply = self.core.list_namespaced_config_map(
            self.namespace, field_selector=self._selector, _preload_content=False,
            _request_timeout=(5, 30))
        listed = json.loads(reply.data)
        items = listed.get("items") or []
        self.deliver(Seen(items[0] if items else None))
        return str(listed["metadata"]["resourceVersion"])

    def _watch(self, stop: threading.Event) -> None:
        """Watch from the last version seen until the server ends the request; every event
        moves that version on, so a watch broken halfway resumes after its last event instead
        of replaying older ConfigMap versions."""
        watch = k8s_watch.Watch()
        stream = watch.stream(self.core.list_namespaced_config_map, self.namespace,
                              field_selector=self._selector, resource_version=self.version,
                              timeout_seconds=SERVER_TIMEOUT, allow_watch_bookmarks=True,
                              _request_timeout=(5, READ_TIMEOUT))
        try:
            for event in stream:
                if stop.is_set():
                    break
                kind, raw = event["type"], event["raw_object"]
                if kind == "ERROR":
                    raise k8s.ApiException(status=raw.get("code"), reason=raw.get("reason"))
                self.version = str((raw.get("metadata") or {}).get("resourceVersion") or
                                   self.version)
                if kind == "BOOKMARK":
                    continue
                self.deliver(Seen(None if kind == "DELETED" else raw))
        finally:
            watch.stop()


def _reason(error: Exception) -> str:
    # Connection errors name the host and the reason; they carry no headers or tokens.
    text = str(error).split("\n")[0][:200]
    return f": {text}" if text else ""
