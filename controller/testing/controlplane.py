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
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from controller.testing.consul_agent import ConsulAgent
from controller.testing.processes import (
    ControlPlaneError,
    Process,
    find_assets,
    free_port,
    http_ok,
    run_checked,
)

__all__ = ["ConsulAgent", "ControlPlane", "ControlPlaneError", "find_assets", "free_port"]


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

    def install_crds(self, timeout: float = 30.0) -> None:
        """Apply crds/ (the ShardRing and kopf's peering CRDs) and wait until they are served:
        an operator started before them finds nothing to serve, and one started while the API
        server is still setting up their storage is answered 429."""
        kubectl = [str(self.assets / "kubectl") if self.assets else "kubectl",
                   "--kubeconfig", str(self.kubeconfig)]
        crds = Path(__file__).resolve().parents[2] / "crds"
        run_checked(kubectl + ["apply", "-k", str(crds)], "apply crds/")
        run_checked(kubectl + ["wait", "--for=condition=Established", f"--timeout={timeout:.0f}s",
                               "-f", str(crds / "shardrings.shardring.io.yaml"),
                               "-f", str(crds / "clusterkopfpeerings.kopf.dev.yaml")],
                    "wait for the CRDs")

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
        process.wait_ready(ready, timeout)
        return process

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
        self._spawn("etcd", self._etcd_args, lambda: http_ok(f"{self.etcd_url}/health"))

    def _start_apiserver(self) -> None:
        certs = self.workdir / "certs"
        certs.mkdir(exist_ok=True)
        key = certs / "sa.key"
        if not key.exists():
            run_checked(["openssl", "genrsa", "-out", str(key), "2048"],
                        "openssl (service-account key)")
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
            # As on OpenShift: an ownerReference that blocks deletion needs finalizers rights.
            "--enable-admission-plugins", "OwnerReferencesPermissionEnforcement",
            "--v", "1",
        ]
        self._spawn("kube-apiserver", self._apiserver_args, self._apiserver_ready, timeout=90)
        self.kubeconfig = self.workdir / "kubeconfig"
        self._write_kubeconfig()

    def _apiserver_ready(self) -> bool:
        return http_ok(f"{self.api_url}/readyz", token=self.admin_token)

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
            "--controllers", "garbagecollector,namespace,endpointslice", "--leader-elect=false",
            "--secure-port", "0", "--v", "1",
        ]
        self._spawn("kube-controller-manager", args, lambda: True)

    def start_consul(self) -> None:
        self.consul_agent = ConsulAgent(self.assets, self.workdir / "consul-main")
        self.consul_agent.start()
        self.processes["consul"] = self.consul_agent.process
        self.consul_addr = self.consul_agent.address
