"""A real etcd server on loopback used as a service registry (not the API server's etcd), and a
registrar that registers instances exactly as the design notes do: a lease, a key under the
service prefix bound to it, and keep-alives."""

from __future__ import annotations

import base64
import json
import signal
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .processes import ControlPlaneError, Process, free_port, http_ok


@dataclass
class EtcdRegistryServer:
    assets: Path
    workdir: Path
    process: Process | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.client_port, self.peer_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"

    def start(self) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [str(self.assets / "etcd"), "--name", "registry",
                "--data-dir", str(self.workdir / "data"),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"registry={peer}", "--unsafe-no-fsync",
                "--log-level", "warn"]
        self.process = Process("etcd-registry", args, self.workdir / "etcd.log")
        self.process.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not self.process.running():
                raise ControlPlaneError(f"etcd (registry) exited at start-up:\n"
                                        f"{self.process.log_tail()}")
            if http_ok(f"{self.url}/health"):
                return
            time.sleep(0.05)
        raise ControlPlaneError(f"etcd (registry) not healthy after 30 s:\n"
                                f"{self.process.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process:
            self.process.stop(sig=sig)

    def restart(self) -> None:
        self.stop()
        self.start()

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.url}{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read() or b"{}")

    def compact(self) -> int:
        """Compact the history up to the current revision; returns that revision."""
        revision = int(self.call("/v3/kv/range", {"key": _b64("/")})["header"]["revision"])
        self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


@dataclass
class Registrar:
    """Instances registered under a prefix, each key bound to its own lease (as in the notes)."""

    server: EtcdRegistryServer
    prefix: str
    leases: dict[str, int] = field(default_factory=dict)

    def register(self, name: str, value: str | bytes, ttl: int = 60) -> int:
        lease = int(self.server.call("/v3/lease/grant", {"TTL": ttl})["ID"])
        self.server.call("/v3/kv/put", {"key": _b64(self.prefix + name), "value": _b64(value),
                                        "lease": str(lease)})
        self.leases[name] = lease
        return lease

    def put(self, name: str, value: str | bytes) -> None:
        """Change a registered instance's value (on its lease)."""
        self.server.call("/v3/kv/put", {"key": _b64(self.prefix + name), "value": _b64(value),
                                        "lease": str(self.leases[name])})

    def keep_alive(self) -> None:
        for lease in self.leases.values():
            self.server.call("/v3/lease/keepalive", {"ID": str(lease)})

    def revoke(self, name: str) -> None:
        """The instance's lease ends (as when it stops keeping it alive): its key goes."""
        self.server.call("/v3/lease/revoke", {"ID": str(self.leases.pop(name))})

    def cleanup(self) -> None:
        for name in list(self.leases):
            try:
                self.revoke(name)
            except OSError:
                pass
