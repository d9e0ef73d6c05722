"""Processes of the local control plane: finding (or building) the binaries, free ports, a child
process with its log, and small HTTP and command helpers."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "hack" / "build-tools.sh"
REQUIRED = ("etcd", "kube-apiserver", "consul", "prometheus", "promtool")


class ControlPlaneError(RuntimeError):
    """A part of the control plane is missing or did not start; the message says which and why."""


def find_assets(build: bool = True) -> Path:
    """The directory holding the control-plane binaries (building them if needed)."""
    for variable in ("SHARDRING_ASSETS", "KUBEBUILDER_ASSETS"):
        value = os.environ.get(variable)
        if value:
            path = Path(value)
            missing = [b for b in REQUIRED if not (path / b).exists()]
            if missing:
                raise ControlPlaneError(f"{variable}={value} lacks {', '.join(missing)}")
            return path
    if not build:
        raise ControlPlaneError("no binaries: set SHARDRING_ASSETS or run hack/build-tools.sh")
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise ControlPlaneError(f"building the control-plane binaries failed:\n{tail}")
    return Path(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Process:
    name: str
    args: list[str]
    log_path: Path
    popen: subprocess.Popen | None = None

    def start(self, env: dict[str, str] | None = None) -> None:
        log = open(self.log_path, "ab")
        try:
            self.popen = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True,
                                          env=env)
        except OSError as error:
            raise ControlPlaneError(f"{self.name} could not start: {error}") from None
        finally:
            log.close()

    def wait_ready(self, ready, timeout: float = 60.0, interval: float = 0.1) -> None:
        """Return once ``ready()`` holds; raise (with the log's tail) if the process exits first
        or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise ControlPlaneError(f"{self.name} exited at start-up; last log lines:\n"
                                        f"{self.log_tail()}")
            if ready():
                return
            time.sleep(interval)
        raise ControlPlaneError(f"{self.name} not healthy after {timeout:.0f} s; last log "
                                f"lines:\n{self.log_tail()}")

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
            except ProcessLookupError:
                pass
        self.popen = None




def connections_to(port: int, pid: int | str = "self") -> int:
    """A process's established TCP connections to a local port (its sockets' inodes, matched in
    /proc/<pid>/net/tcp): what a Consul agent counts against limits.http_max_conns_per_client."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "01" and int(fields[2].split(":")[1], 16) == port and \
                fields[9] in inodes:
            count += 1
    return count


def run_checked(args: list[str], what: str) -> None:
    try:
        subprocess.run(args, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise ControlPlaneError(f"{what} failed: {error}") from None


def http_get(url: str, token: str | None = None, ca_file: Path | None = None) -> bytes | None:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
        request.add_header("X-Consul-Token", token)
    context = None
    if url.startswith("https"):
        context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else \
            ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return response.read() if response.status == 200 else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def http_ok(url: str, token: str | None = None) -> bool:
    return http_get(url, token) is not None
