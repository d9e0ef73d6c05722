"""Test and demo support: a real local control plane (etcd, kube-apiserver, Consul)."""

from .controlplane import ControlPlane, ControlPlaneError, find_assets

__all__ = ["ControlPlane", "ControlPlaneError", "find_assets"]
