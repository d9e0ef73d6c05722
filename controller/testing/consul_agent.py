"""A Consul agent on loopback: dev mode, or a persistent server with ACLs (default deny) or TLS
(a throwaway CA), for the fault tests."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path

from controller.testing.processes import ControlPlaneError, Process, free_port, http_get
from controller.testing.tls import issue, make_ca


@dataclass
class ConsulAgent:
    """A real Consul agent on loopback.

    ``persistent`` runs a single-server agent with a data directory (state survives a restart, for
    fault tests) instead of ``-dev``; ``acl_token`` turns ACLs on with default deny and that
    management token; ``tls`` serves HTTPS only, with a CA and certificate made by openssl.
    """

    assets: Path
    workdir: Path
    persistent: bool = False
    acl_token: str | None = None
    tls: bool = False
    extra_config: str = ""  # HCL added to the agent's configuration (a limit, say)
    process: Process | None = field(init=False, default=None)
    address: str = field(init=False, default="")
    ca_file: Path | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.ports = {k: free_port() for k in ("serf_lan", "serf_wan", "server")}
        if self.tls:
            self.ca_file = self._make_certificates()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    def _config(self) -> str:
        ports = " ".join(f"{k} = {v}" for k, v in self.ports.items())
        web = f"https = {self.port} http = -1" if self.tls else f"http = {self.port}"
        lines = [f"ports {{ {web} dns = -1 grpc = -1 grpc_tls = -1 {ports} }}"]
        if self.acl_token:
            lines.append('acl { enabled = true default_policy = "deny" '
                         f'tokens {{ initial_management = "{self.acl_token}" }} }}')
        if self.tls:
            certs = self.workdir / "tls"
            lines.append(f'tls {{ defaults {{ ca_file = "{certs}/ca.pem" '
                         f'cert_file = "{certs}/server.pem" key_file = "{certs}/server.key" '
                         'verify_incoming = false } }')
        if self.extra_config:
            lines.append(self.extra_config)
        return "\n".join(lines)

    def start(self) -> None:
        binary = self.assets / "consul"
        if not binary.exists():
            raise ControlPlaneError(f"consul binary not found in {self.assets}")
        args = [str(binary), "agent", "-bind", "127.0.0.1", "-client", "127.0.0.1",
                "-node", "shardring-dev", "-log-level", "warn", "-hcl", self._config()]
        if self.persistent:
            args += ["-server", "-bootstrap-expect", "1",
                     "-data-dir", str(self.workdir / "data")]
        else:
            args.append("-dev")
        self.process = Process("consul", args, self.workdir / "consul.log")
        self.process.start()
        self.process.wait_ready(self.ready)

    def ready(self) -> bool:
        body = http_get(f"{self.url}/v1/status/leader", token=self.acl_token,
                         ca_file=self.ca_file)
        if not body or body.strip() in (b'""', b""):
            return False
        # A server agent answers before its catalog accepts registrations; wait for that too.
        return http_get(f"{self.url}/v1/agent/self", token=self.acl_token,
                         ca_file=self.ca_file) is not None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process:
            self.process.stop(sig=sig)

    def signal(self, sig: int) -> None:
        """SIGSTOP hangs the agent (it accepts connections and answers nothing); SIGCONT ends it."""
        if self.process and self.process.popen:
            self.process.popen.send_signal(sig)

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, token: str | None = None):
        import consul
        client = consul.Consul(host="127.0.0.1", port=self.port,
                               scheme="https" if self.tls else "http",
                               verify=str(self.ca_file) if self.ca_file else True)
        client.token = token or self.acl_token
        return client

    def _make_certificates(self) -> Path:
        certs = self.workdir / "tls"
        ca = make_ca(certs)
        issue(certs, "server", extra_names=("server.dc1.consul",))
        return ca
