"""Test and demo support: a real local control plane (etcd, kube-apiserver, Consul)."""

from controller.testing.controlplane import (
    ConsulAgent,
    ControlPlane,
    ControlPlaneError,
    find_assets,
)

__all__ = ["ConsulAgent", "ControlPlane", "ControlPlaneError", "find_assets"]
