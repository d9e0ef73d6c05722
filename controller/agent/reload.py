"""How the workload is told to re-read its files: an HTTP POST (Prometheus' ``/-/reload``), a
signal to a process, or a command. Each returns what the workload answered, for the log, or
raises ``ReloadFailed`` with a reason; retries are the agent's."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

TIMEOUT = 10.0


class ReloadFailed(Exception):
    """The workload did not take the new files; the message says why."""


class Reload(Protocol):
    def __call__(self) -> str: ...


@dataclass(frozen=True)
class HttpPost:
    url: str

    def __call__(self) -> str:
        request = urllib.request.Request(self.url, method="POST", data=b"")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
                reply.read()
                return f"POST {self.url}: HTTP {reply.status}"
        except urllib.error.HTTPError as error:
            body = error.read(300).decode(errors="replace").strip()
            raise ReloadFailed(f"POST {self.url}: HTTP {error.code} {body}") from None
        except (OSError, ValueError, http.client.HTTPException) as error:
            raise ReloadFailed(f"POST {self.url}: {type(error).__name__} {error}") from None


@dataclass(frozen=True)
class Signal:
    signal: signal.Signals
    pid_file: Path

    def __call__(self) -> str:
        try:
            pid = int(self.pid_file.read_text().split()[0])
            os.kill(pid, self.signal)
        except (OSError, ValueError, IndexError) as error:
            raise ReloadFailed(f"{self.signal.name} to the pid in {self.pid_file}: {error}") \
                from None
        return f"{self.signal.name} sent to pid {pid} (from {self.pid_file})"


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]

    def __call__(self) -> str:
        try:
            done = subprocess.run(self.argv, capture_output=True, text=True, timeout=TIMEOUT,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ReloadFailed(f"{self.argv[0]}: {error}") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-300:]
            raise ReloadFailed(f"{self.argv[0]} exited {done.returncode}: {tail}")
        return f"{self.argv[0]} exited 0"


def parse_signal(name: str) -> signal.Signals:
    name = name.upper()
    try:
        return signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
    except KeyError:
        raise ValueError(f"unknown signal {name!r}") from None


def prometheus_targets(api: str) -> dict[str, Any] | None:
    """Prometheus' ``/api/v1/targets?state=any`` (None when it does not answer)."""
    try:
        with urllib.request.urlopen(f"{api}/api/v1/targets?state=any", timeout=TIMEOUT) as reply:
            found = json.load(reply)
    except (OSError, ValueError, http.client.HTTPException):
        return None
    return found if isinstance(found, dict) else None
