"""A real etcd server on loopback used as a service registry (not the API server's etcd), and a
registrar that registers instances exactly as the design notes do: a lease, a key under the
service prefix bound to it, and keep-alives.

``tls`` serves HTTPS only and asks clients for a certificate signed by its CA; ``enable_auth``
turns etcd's authentication on (a root user for the test's own calls, and a read-only user)."""

from __future__ import annotations

import base64
import json
import signal
import ssl
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.testing.processes import Process, free_port
from controller.testing.tls import issue, make_ca

ROOT_PASSWORD = "root-password"


@dataclass
class EtcdRegistryServer:
    assets: Path
    workdir: Path
    tls: bool = False
    process: Process | None = field(init=False, default=None)
    token: str | None = field(init=False, default=None)  # root's, once auth is on

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.client_port, self.peer_port = free_port(), free_port()
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.client_port}"
        self.ca_file = self.client_cert = self.client_key = None
        if self.tls:
            certs = self.workdir / "tls"
            self.ca_file = make_ca(certs)
            self.server_cert, self.server_key = issue(certs, "server")
            # No CommonName: with authentication on, etcd's gateway refuses a client certificate
            # that has one (it would stand for the user name).
            self.client_cert, self.client_key = issue(certs, "client", common_name="")

    def _context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context

    def start(self) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [str(self.assets / "etcd"), "--name", "registry",
                "--data-dir", str(self.workdir / "data"),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"registry={peer}", "--unsafe-no-fsync",
                "--log-level", "warn"]
        if self.tls:
            args += ["--cert-file", str(self.server_cert), "--key-file", str(self.server_key),
                     "--trusted-ca-file", str(self.ca_file), "--client-cert-auth"]
        self.process = Process("etcd-registry", args, self.workdir / "etcd.log")
        self.process.start()
        self.process.wait_ready(self._healthy, timeout=30, interval=0.05)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2,
                                        context=self._context()) as reply:
                return reply.status == 200
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process:
            self.process.stop(sig=sig)

    def restart(self) -> None:
        self.stop()
        self.start()

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = self.token
        request = urllib.request.Request(f"{self.url}{path}", data=json.dumps(body).encode(),
                                         headers=headers)
        with urllib.request.urlopen(request, timeout=10, context=self._context()) as reply:
            return json.loads(reply.read() or b"{}")

    def enable_auth(self, user: str, password: str, prefix: str) -> None:
        """etcd's authentication on: root for this helper, ``user`` may only read ``prefix``."""
        end = bytearray(prefix.encode())
        end[-1] += 1
        for path, body in [
                ("/v3/auth/user/add", {"name": "root", "password": ROOT_PASSWORD}),
                ("/v3/auth/role/add", {"name": "root"}),
                ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
                ("/v3/auth/user/add", {"name": user, "password": password}),
                ("/v3/auth/role/add", {"name": "reader"}),
                ("/v3/auth/role/grant", {"name": "reader", "perm": {
                    "permType": "READ", "key": _b64(prefix), "range_end": _b64(bytes(end))}}),
                ("/v3/auth/user/grant", {"user": user, "role": "reader"}),
                ("/v3/auth/enable", {})]:
            self.call(path, body)
        self.token = self.call("/v3/auth/authenticate",
                               {"name": "root", "password": ROOT_PASSWORD})["token"]

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
