"""A real, local control plane on loopback, like controller-runtime's envtest.

etcd + kube-apiserver (RBAC on, service-account token issuance on, an admin token in a kubeconfig),
optionally kube-controller-manager (garbage collection, namespace deletion), and a Consul agent in
``-dev`` mode. Every port is picked free on 127.0.0.1, data lives in a temporary directory, and
``stop()`` leaves no process behind.

Binaries come from ``SHARDRING_ASSETS`` or ``KUBEBUILDER_ASSETS`` (a directory holding them) or are
built once by ``hack/build-tools.sh`` into ``~/.cache/shardring``. With
``SHARDRING_USE_EXISTING_CLUSTER=true`` nothing is started: ``KUBECONFIG`` and ``CONSUL_HTTP_ADDR``
name the cluster and the Consul agent to use instead.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "hack" / "build-tools.sh"
REQUIRED = ("etcd", "kube-apiserver", "consul")


class ControlPlaneError(RuntimeError):
    """A part of the control plane is missing or did not start; the message says which and why."""


def find_assets(build: bool = True) -> Path:
    """The directory holding etcd, kube-apiserver and consul (building them if needed)."""
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


@dataclass
class ControlPlane:
    assets: Path | None = None
    controller_manager: bool = True
    consul: bool = True
    workdir: Path | None = None
    kubeconfig: Path = field(init=False)
    consul_addr: str = field(init=False, default="")
    api_url: str = field(init=False, default="")
    admin_token: str = field(init=False, default="")
    existing: bool = field(init=False, default=False)
    processes: dict[str, Process] = field(init=False, default_factory=dict)

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        if os.environ.get("SHARDRING_USE_EXISTING_CLUSTER", "").lower() in ("1", "true", "yes"):
            return self._use_existing()
        self.assets = Path(self.assets) if self.assets else find_assets()
        self._owns_workdir = self.workdir is None
        self.workdir = Path(self.workdir or tempfile.mkdtemp(prefix="shardring-cp-"))
        try:
            self._start_etcd()
            self._start_apiserver()
            if self.controller_manager and (self.assets / "kube-controller-manager").exists():
                self._start_controller_manager()
            if self.consul:
                self.start_consul()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for name in ("consul", "kube-controller-manager", "kube-apiserver", "etcd"):
            process = self.processes.pop(name, None)
            if process:
                process.stop()
        if getattr(self, "_owns_workdir", False) and self.workdir and \
                not os.environ.get("SHARDRING_KEEP_WORKDIR"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def start_for_command_line(self) -> bool:
        """Start, or print why not (for `make cluster` and `make demo`); True when running."""
        try:
            self.start()
        except ControlPlaneError as error:
            print(f"error: {error}", file=sys.stderr)
            return False
        return True

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """Variables that point kubectl, consul and the operator at this control plane."""
        values = {"KUBECONFIG": str(self.kubeconfig), "CONSUL_HTTP_ADDR": self.consul_addr}
        if self.assets:
            values["PATH"] = f"{self.assets}:{os.environ.get('PATH', '')}"
        return values

    def write_env_file(self, path: Path) -> Path:
        lines = [f"export {k}={v}" for k, v in self.env().items() if k != "PATH"]
        if self.assets:
            lines.append(f'export PATH="{self.assets}:$PATH"')
        path.write_text("\n".join(lines) + "\n")
        return path

    # ---- parts -----------------------------------------------------------------------------

    def _use_existing(self) -> ControlPlane:
        config = os.environ.get("KUBECONFIG")
        address = os.environ.get("CONSUL_HTTP_ADDR")
        if not config or not address:
            raise ControlPlaneError(
                "SHARDRING_USE_EXISTING_CLUSTER needs KUBECONFIG and CONSUL_HTTP_ADDR")
        self.existing = True
        self.kubeconfig = Path(config)
        self.consul_addr = address.removeprefix("http://")
        return self

    def _spawn(self, name: str, args: list[str], ready, timeout: float = 60.0) -> Process:
        process = Process(name, args, self.workdir / f"{name}.log")
        self.processes[name] = process
        process.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process.running():
                raise ControlPlaneError(f"{name} exited at start-up; last log lines:\n"
                                        f"{process.log_tail()}")
            if ready():
                return process
            time.sleep(0.1)
        raise ControlPlaneError(f"{name} not healthy after {timeout:.0f} s; last log lines:\n"
                                f"{process.log_tail()}")

    def _binary(self, name: str) -> str:
        path = self.assets / name
        if not path.exists():
            raise ControlPlaneError(f"{name} binary not found in {self.assets}")
        return str(path)

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._etcd_args = [
            self._binary("etcd"), "--name", "shardring", "--data-dir", str(self.workdir / "etcd"),
            "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"shardring=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync", "--log-level", "warn",
        ]
        self._spawn("etcd", self._etcd_args, lambda: _http_ok(f"{self.etcd_url}/health"))

    def _start_apiserver(self) -> None:
        certs = self.workdir / "certs"
        certs.mkdir(exist_ok=True)
        key = certs / "sa.key"
        if not key.exists():
            _run(["openssl", "genrsa", "-out", str(key), "2048"], "openssl (service-account key)")
        self.admin_token = self.admin_token or secrets.token_hex(16)
        (self.workdir / "tokens.csv").write_text(
            f'{self.admin_token},shardring-admin,shardring-admin,"system:masters"\n')
        port = free_port() if not self.api_url else int(self.api_url.rsplit(":", 1)[1])
        self.api_url = f"https://127.0.0.1:{port}"
        self._apiserver_args = [
            self._binary("kube-apiserver"),
            "--etcd-servers", self.etcd_url, "--etcd-prefix", "/registry",
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(port), "--cert-dir", str(certs),
            "--authorization-mode", "RBAC", "--token-auth-file", str(self.workdir / "tokens.csv"),
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(key),
            "--service-account-signing-key-file", str(key),
            "--service-cluster-ip-range", "10.96.0.0/16",
            "--allow-privileged=true", "--disable-admission-plugins", "ServiceAccount",
            "--v", "1",
        ]
        self._spawn("kube-apiserver", self._apiserver_args, self._apiserver_ready, timeout=90)
        self.kubeconfig = self.workdir / "kubeconfig"
        self._write_kubeconfig()

    def _apiserver_ready(self) -> bool:
        return _http_ok(f"{self.api_url}/readyz", token=self.admin_token)

    def _write_kubeconfig(self) -> None:
        ca = self.workdir / "certs" / "apiserver.crt"
        cluster = {"server": self.api_url}
        if ca.exists():
            cluster["certificate-authority"] = str(ca)
        else:  # pragma: no cover - the API server writes its self-signed certificate there
            cluster["insecure-skip-tls-verify"] = True
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "shardring",
            "clusters": [{"name": "shardring", "cluster": cluster}],
            "users": [{"name": "admin", "user": {"token": self.admin_token}}],
            "contexts": [{"name": "shardring",
                          "context": {"cluster": "shardring", "user": "admin",
                                      "namespace": "default"}}],
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))

    def restart_apiserver(self) -> None:
        """Stop and start kube-apiserver on the same port and etcd (a fault test)."""
        self.processes.pop("kube-apiserver").stop()
        self._spawn("kube-apiserver", self._apiserver_args, self._apiserver_ready, timeout=90)

    def _start_controller_manager(self) -> None:
        args = [
            self._binary("kube-controller-manager"), "--kubeconfig", str(self.kubeconfig),
            "--controllers", "garbagecollector,namespace", "--leader-elect=false",
            "--secure-port", "0", "--v", "1",
        ]
        self._spawn("kube-controller-manager", args, lambda: True)

    def start_consul(self) -> None:
        self.consul_agent = ConsulAgent(self.assets, self.workdir / "consul-main")
        self.consul_agent.start()
        self.processes["consul"] = self.consul_agent.process
        self.consul_addr = self.consul_agent.address



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
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self.process.running():
                raise ControlPlaneError(f"consul exited at start-up; last log lines:\n"
                                        f"{self.process.log_tail()}")
            if self.ready():
                return
            time.sleep(0.1)
        raise ControlPlaneError(f"consul not healthy after 60 s; last log lines:\n"
                                f"{self.process.log_tail()}")

    def ready(self) -> bool:
        body = _http_get(f"{self.url}/v1/status/leader", token=self.acl_token,
                         ca_file=self.ca_file)
        if not body or body.strip() in (b'""', b""):
            return False
        # A server agent answers before its catalog accepts registrations; wait for that too.
        return _http_get(f"{self.url}/v1/agent/self", token=self.acl_token,
                         ca_file=self.ca_file) is not None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process:
            self.process.stop(sig=sig)

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
        certs.mkdir(exist_ok=True)
        names = ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
        ca_key, ca, key, csr, cert = (certs / n for n in names)
        ext = certs / "san.cnf"
        ext.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:server.dc1.consul\n"
                       "basicConstraints = CA:FALSE\n")
        _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
              "-subj", "/CN=shardring test CA", "-keyout", str(ca_key), "-out", str(ca)],
             "openssl (CA)")
        _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
              "-keyout", str(key), "-out", str(csr)], "openssl (server key)")
        _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
              "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert)],
             "openssl (server certificate)")
        return ca


def _run(args: list[str], what: str) -> None:
    try:
        subprocess.run(args, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise ControlPlaneError(f"{what} failed: {error}") from None


def _http_get(url: str, token: str | None = None, ca_file: Path | None = None) -> bytes | None:
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


def _http_ok(url: str, token: str | None = None) -> bool:
    return _http_get(url, token) is not None
