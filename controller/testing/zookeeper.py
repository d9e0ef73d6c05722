"""A real Apache ZooKeeper server on loopback (the jars hack/zookeeper.sh fetches, run by Java),
and a registrar whose instances register as the design notes do: each one has its own session
and an ephemeral node under the service path, which goes with its session."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from controller.testing.processes import ControlPlaneError, Process, free_port

SCRIPT = Path(__file__).resolve().parents[2] / "hack" / "zookeeper.sh"
T = TypeVar("T")


def zookeeper_jars() -> Path:
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    if result.returncode != 0:
        raise ControlPlaneError(f"fetching ZooKeeper failed:\n{result.stderr[-2000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


@dataclass
class ZooKeeperServer:
    workdir: Path
    process: Process | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.hosts = f"127.0.0.1:{self.port}"

    def start(self) -> None:
        java = shutil.which("java")
        if not java:
            raise ControlPlaneError("java is required for the ZooKeeper server")
        args = [java, "-Xmx256m", "-Dzookeeper.admin.enableServer=false",
                "-Dzookeeper.4lw.commands.whitelist=srvr", "-cp", f"{zookeeper_jars()}/*",
                "org.apache.zookeeper.server.ZooKeeperServerMain", str(self.port),
                str(self.workdir / "data")]
        self.process = Process("zookeeper", args, self.workdir / "zookeeper.log")
        self.process.start()
        self.process.wait_ready(self.ok)

    def ok(self) -> bool:
        """Serving requests: its database loaded (``ruok`` says imok before that, and clients
        that connect meanwhile are turned away)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"srvr")
                answer = b""
                while chunk := sock.recv(4096):
                    answer += chunk
                return b"Mode: standalone" in answer
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process:
            self.process.stop(sig=sig)

    def restart(self) -> None:
        self.stop()
        self.start()


def digest_id(user: str, password: str) -> str:
    """ZooKeeper's digest ACL id: user:base64(sha1(user:password))."""
    import base64
    import hashlib
    hashed = base64.b64encode(hashlib.sha1(f"{user}:{password}".encode()).digest()).decode()
    return f"{user}:{hashed}"


class Registrar:
    """Instances under ``path``, each with its own ZooKeeper session (as separate processes)."""

    def __init__(self, server: ZooKeeperServer, path: str):
        self.server, self.path = server, path.rstrip("/")
        self.sessions: dict[str, Any] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    def register(self, name: str, data: bytes | str,
                 readers: tuple[str, str] | None = None) -> None:
        """``readers``: (user, password) of the only digest identity that may read the node
        (its creator keeps every right); None: anyone may."""
        raw = data.encode() if isinstance(data, str) else data

        async def create() -> Any:
            import aiozk
            from aiozk.protocol.acl import ACL
            client = aiozk.ZKClient(self.server.hosts, session_timeout=10)
            await client.start()
            await client.ensure_path(self.path)
            acl = None
            if readers:
                acl = [ACL.make("digest", digest_id(*readers), read=True),
                       ACL.make("world", "anyone", write=True, delete=True, admin=True)]
            await client.create(f"{self.path}/{name}", data=raw, ephemeral=True,
                                acl=acl)
            return client
        self.sessions[name] = self._run(create())

    def set(self, name: str, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        self._run(self.sessions[name].set_data(f"{self.path}/{name}", raw, force=True))

    def end_session(self, name: str) -> None:
        """The instance's session ends (it stopped, or its session expired): its node goes."""
        self._run(self.sessions.pop(name).close())

    def cleanup(self) -> None:
        for name in list(self.sessions):
            try:
                self.end_session(name)
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
