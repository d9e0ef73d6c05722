"""Fixtures: one real control plane per test session, and clients logged in to it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import consul
import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from controller.testing import ControlPlane
from controller.testing.consul_helpers import ConsulHelper


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    plane = ControlPlane()
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def api_client(control_plane: ControlPlane) -> k8s.ApiClient:
    return k8s_config.new_client_from_config(config_file=str(control_plane.kubeconfig))


@pytest.fixture(scope="session")
def core_v1(api_client: k8s.ApiClient) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def consul_client(control_plane: ControlPlane) -> consul.Consul:
    host, port = control_plane.consul_addr.rsplit(":", 1)
    return consul.Consul(host=host, port=int(port))


@pytest.fixture
def consul_helper(consul_client: consul.Consul) -> Iterator[ConsulHelper]:
    helper = ConsulHelper(consul_client)
    yield helper
    helper.cleanup()


@pytest.fixture
def namespace(core_v1: k8s.CoreV1Api) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core_v1.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    if not os.environ.get("SHARDRING_KEEP_NAMESPACES"):
        core_v1.delete_namespace(name)


@pytest.fixture(scope="session")
def crd(api_client: k8s.ApiClient) -> None:
    from tests.operator_helpers import apply_crd
    apply_crd(api_client)


@pytest.fixture(scope="session")
def operator_env(control_plane: ControlPlane) -> Iterator[None]:
    """The in-process operator reads the same variables a deployed one would."""
    from controller.testing.controlplane import free_port
    names = ("KUBECONFIG", "CONSUL_HTTP_ADDR", "SHARDRING_METRICS_PORT")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(KUBECONFIG=str(control_plane.kubeconfig),
                      CONSUL_HTTP_ADDR=control_plane.consul_addr,
                      SHARDRING_METRICS_PORT=str(free_port()))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def operator(crd, operator_env):
    """The operator in-process, against the real control plane; the value is its memo (the
    ``Operator``: workers, adapters, source registry)."""
    from tests.inprocess import InProcessOperator
    with InProcessOperator() as memo:
        yield memo


@pytest.fixture
def rings(api_client: k8s.ApiClient, namespace: str):
    from tests.operator_helpers import Rings
    return Rings(api_client, namespace)


FIGURES: list[str] = []


@pytest.fixture
def report():
    """Record a measured figure (recovery times, write counts); printed at the end of the run."""
    return FIGURES.append


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("measured figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
