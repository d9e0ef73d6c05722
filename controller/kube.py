"""Thin Kubernetes adapter: the official (synchronous) client, run in worker threads so kopf's event
loop never blocks. Every write is conditional on resourceVersion."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

GROUP, VERSION, PLURAL = "shardring.io", "v1alpha1", "shardrings"
MANAGED_BY = {"app.kubernetes.io/managed-by": "shardring-operator"}
RING_LABEL = "shardring.io/ring"


class Conflict(Exception):
    """Someone else wrote first (HTTP 409); re-read and try again."""


@dataclass(frozen=True)
class ConfigMapView:
    """What the operator keeps of a ConfigMap: its ring.json and a digest of all its data (a
    thousand full copies of member files cost more memory than they are worth)."""
    name: str
    ring_json: str | None
    data_digest: str
    labels: dict[str, str]
    owner_uids: tuple[str, ...]
    controller_uid: str | None
    resource_version: str


def new_api_client() -> k8s.ApiClient:
    try:
        k8s_config.load_incluster_config()
        return k8s.ApiClient()
    except k8s_config.ConfigException:
        # Read KUBECONFIG now: the client library reads it once, at import time.
        return k8s_config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))


class Kube:
    def __init__(self, api: k8s.ApiClient | None = None):
        self.api = api or new_api_client()
        self.core = k8s.CoreV1Api(self.api)
        self.custom = k8s.CustomObjectsApi(self.api)

    async def _call(self, fn, *args, **kwargs) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except k8s.ApiException as error:
            if error.status == 409:
                raise Conflict(str(error.reason)) from None
            raise

    async def read_configmap(self, namespace: str, name: str) -> ConfigMapView | None:
        try:
            found = await self._call(self.core.read_namespaced_config_map, name, namespace)
        except k8s.ApiException as error:
            if error.status == 404:
                return None
            raise
        return view_from_dict(self.api.sanitize_for_serialization(found))

    async def write_configmap(self, namespace: str, name: str, data: dict[str, str],
                              labels: dict[str, str], owner: dict[str, Any],
                              resource_version: str | None) -> ConfigMapView:
        """Create (no resourceVersion) or replace (only if still at ``resource_version``)."""
        body = k8s.V1ConfigMap(
            metadata=k8s.V1ObjectMeta(name=name, namespace=namespace, labels=labels,
                                      owner_references=[owner],
                                      resource_version=resource_version),
            data=data)
        if resource_version is None:
            written = await self._call(self.core.create_namespaced_config_map, namespace, body)
        else:
            written = await self._call(self.core.replace_namespaced_config_map, name, namespace,
                                       body)
        return view_from_dict(self.api.sanitize_for_serialization(written))

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any],
                           resource_version: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self._call(self.custom.patch_namespaced_custom_object_status, GROUP, VERSION,
                                namespace, PLURAL, name, body)

    async def read_ring(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._call(self.custom.get_namespaced_custom_object, GROUP, VERSION,
                                    namespace, PLURAL, name)
        except k8s.ApiException as error:
            if error.status == 404:
                return None
            raise

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str | None:
        """The decoded value, or None when the Secret or the key is missing (never logged)."""
        try:
            secret = await self._call(self.core.read_namespaced_secret, name, namespace)
        except k8s.ApiException as error:
            if error.status == 404:
                raise SecretMissing(f"Secret {name!r} not found in namespace {namespace!r}") \
                    from None
            if error.status == 403:
                raise SecretMissing(f"the operator may not read Secret {name!r} in namespace "
                                    f"{namespace!r} (RBAC)") from None
            raise
        raw = (secret.data or {}).get(key)
        if raw is None:
            raise SecretMissing(f"Secret {name!r} has no key {key!r}")
        return base64.b64decode(raw).decode().strip()


class SecretMissing(Exception):
    """The ring's token Secret or key cannot be read; the message names it (never the value)."""


def owner_reference(body: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ShardRing",
            "name": body["metadata"]["name"], "uid": body["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


def data_digest(data: dict[str, str]) -> str:
    """Identifies a ConfigMap's data: equal digests, equal data (keys and values)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def view_from_dict(body: dict[str, Any]) -> ConfigMapView:
    """The view of a ConfigMap as JSON (camelCase keys): a watch event's body, or a client
    model after ``sanitize_for_serialization``."""
    metadata = body.get("metadata") or {}
    owners = metadata.get("ownerReferences") or []
    controller = next((o.get("uid") for o in owners if o.get("controller")), None)
    data = body.get("data") or {}
    return ConfigMapView(name=metadata.get("name", ""), ring_json=data.get("ring.json"),
                         data_digest=data_digest(data),
                         labels=dict(metadata.get("labels") or {}),
                         owner_uids=tuple(o.get("uid") for o in owners), controller_uid=controller,
                         resource_version=str(metadata.get("resourceVersion", "")))

