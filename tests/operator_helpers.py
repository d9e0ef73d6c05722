"""Helpers for end-to-end tests: apply rings, wait for conditions, read what was published."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client as k8s

from controller.core import ringfile

CRD = Path(__file__).resolve().parents[1] / "crds" / "shardrings.shardring.io.yaml"
T = TypeVar("T")


def service_name() -> str:
    """A Consul service of its own for each test, so tests never see each other's instances."""
    return f"svc-{uuid.uuid4().hex[:8]}"


def quick(service: str, **extra: Any) -> dict[str, Any]:
    """A small ring spec that publishes at once (no stabilization window)."""
    spec: dict[str, Any] = {"service": {"name": service}, "shards": 32,
                            "stabilization": {"window": "0s", "maxDelay": "0s"}}
    spec.update(extra)
    return spec


def subprocess_env(control_plane, kubeconfig=None) -> dict[str, str]:
    """Environment for an operator subprocess: this control plane, and no metrics port (the
    in-process operator of other tests already serves that one)."""
    import os
    env = {k: v for k, v in os.environ.items() if k != "SHARDRING_METRICS_PORT"}
    env.update(KUBECONFIG=str(kubeconfig or control_plane.kubeconfig),
               CONSUL_HTTP_ADDR=control_plane.consul_addr)
    return env


def apply_crd(api_client: k8s.ApiClient, body: dict[str, Any] | None = None) -> None:
    """The CRD of crds/ (or ``body``, one made from it), created or replaced, established."""
    extensions = k8s.ApiextensionsV1Api(api_client)
    body = body or yaml.safe_load(CRD.read_text())
    try:
        extensions.create_custom_resource_definition(body)
    except k8s.ApiException as error:
        if error.status != 409:
            raise
        current = extensions.read_custom_resource_definition(body["metadata"]["name"])
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        extensions.replace_custom_resource_definition(body["metadata"]["name"], body)
    wait_for(lambda: any(c.type == "Established" and c.status == "True" for c in (
        extensions.read_custom_resource_definition(body["metadata"]["name"]).status.conditions
        or [])), "CRD established")


def wait_for(probe: Callable[[], T], what: str, timeout: float = 30.0, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except k8s.ApiException as error:
            if error.status != 404:
                raise
            last = None
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


class Rings:
    def __init__(self, api_client: k8s.ApiClient, namespace: str):
        self.custom = k8s.CustomObjectsApi(api_client)
        self.core = k8s.CoreV1Api(api_client)
        self.namespace = namespace

    def create(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": "shardring.io/v1alpha1", "kind": "ShardRing",
                "metadata": {"name": name}, "spec": spec}
        return self.custom.create_namespaced_custom_object(
            "shardring.io", "v1alpha1", self.namespace, "shardrings", body)

    def patch(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(
            "shardring.io", "v1alpha1", self.namespace, "shardrings", name, {"spec": spec})

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            "shardring.io", "v1alpha1", self.namespace, "shardrings", name)

    def list(self) -> list[dict[str, Any]]:
        return self.custom.list_namespaced_custom_object(
            "shardring.io", "v1alpha1", self.namespace, "shardrings")["items"]

    def get(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(
            "shardring.io", "v1alpha1", self.namespace, "shardrings", name)

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        for condition in (self.get(name).get("status") or {}).get("conditions") or []:
            if condition["type"] == kind:
                return condition
        return None

    def configmap(self, name: str) -> k8s.V1ConfigMap:
        return self.core.read_namespaced_config_map(name, self.namespace)

    def ring(self, configmap: str) -> ringfile.RingFile:
        return ringfile.parse(self.configmap(configmap).data["ring.json"])

    def wait_ring(self, configmap: str, predicate: Callable[[ringfile.RingFile], bool], what: str,
                  timeout: float = 30.0) -> ringfile.RingFile:
        def probe():
            ring = self.ring(configmap)
            return ring if predicate(ring) else None
        return wait_for(probe, what, timeout)

    def events(self, reason: str) -> list[k8s.CoreV1Event]:
        return [e for e in self.core.list_namespaced_event(self.namespace).items
                if e.reason == reason]


def service_account_kubeconfig(control_plane, core_v1, namespace: str, account: str,
                               path: Path) -> Path:
    token = core_v1.create_namespaced_service_account_token(
        account, namespace, k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))).status.token
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    config["users"] = [{"name": "admin", "user": {"token": token}}]
    path.write_text(yaml.safe_dump(config))
    return path


def kubectl(control_plane, *args: str) -> str:
    result = subprocess.run([str(control_plane.assets / "kubectl"), "--kubeconfig",
                             str(control_plane.kubeconfig), *args],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


REPO = Path(__file__).resolve().parents[1]


def tool(script: str, timeout: float = 1200) -> Path:
    """The path a ``hack/`` script prints once it has built, fetched or found its tool (a
    cached tool comes back at once; a failure fails the test with the script's words)."""
    found = subprocess.run(["bash", str(REPO / "hack" / script)], capture_output=True,
                           text=True, timeout=timeout)
    assert found.returncode == 0, found.stderr
    return Path(found.stdout.strip())


class OperatorProcess:
    """``python -m controller run`` as a process of its own, as a Deployment runs it."""

    def __init__(self, control_plane, kubeconfig: Path, log: Path, *args: str):
        env = subprocess_env(control_plane, kubeconfig)
        self.log = log
        self.process = subprocess.Popen([sys.executable, "-m", "controller", "run", *args],
                                        cwd=REPO, env=env, stdout=open(log, "wb"),
                                        stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, grace: float = 30) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def http_server(answer: Callable[[str], bytes]) -> Iterator[str]:
    """A loopback HTTP server answering each GET with ``answer(path)``; yields its base URL."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = answer(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
