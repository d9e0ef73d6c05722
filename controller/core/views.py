"""What the operator keeps of the Kubernetes objects it owns, and how it labels them. Pure: plain
data from JSON bodies (watch events, or client models after ``sanitize_for_serialization``)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class Conflict(Exception):
    """Someone else wrote first (HTTP 409): re-read, then run the pass again."""


class RingGone(Exception):
    """The ShardRing no longer exists (HTTP 404 on its status): its deletion event may have been
    missed (a watch re-listed after an outage does not replay deletions), so its worker stops."""


class NamespaceTerminating(Exception):
    """The namespace is being deleted: nothing new may be created in it (HTTP 403). Its rings go
    with it, so this is the end of the ring's work, not an error to retry."""


class SecretMissing(Exception):
    """The ring's token Secret or key cannot be read; the message names it (never the value)."""


GROUP, VERSION, PLURAL = "shardring.io", "v1alpha1", "shardrings"
MANAGED_BY = {"app.kubernetes.io/managed-by": "shardring-operator"}
RING_LABEL = "shardring.io/ring"
# A Secret serves as a ring's source credentials (a Consul token, an etcd or ZooKeeper user) only
# if its owner marked it with this label set to "true": who may create ShardRings may not read
# Secrets, so the operator must not read any Secret for them.
CREDENTIALS_LABEL = "shardring.io/source-credentials"
# The label it had first, when only Consul tokens were read: still accepted (docs/reference.md).
LEGACY_CREDENTIALS_LABEL = "shardring.io/consul-token"


@dataclass(frozen=True)
class ConfigMapView:
    """A ConfigMap's ring.json and a digest of all its data (a thousand full copies of member files
    cost more memory than they are worth). ``ring_digest`` identifies ring.json; its text is let
    go (None) once it is known to be what this operator published, which it keeps parsed."""

    name: str
    ring_json: str | None
    data_digest: str
    labels: Mapping[str, str]
    controller_uid: str | None
    resource_version: str
    ring_digest: str | None = None  # None: no ring.json


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def data_digest(data: Mapping[str, str]) -> str:
    """Identifies a ConfigMap's data: equal digests, equal data (keys and values). Each key and
    value goes in with its length before it, so no two different data read alike (and no JSON
    encoding of every value first: it took twice as long, for each ring's every write)."""
    digest = hashlib.sha256()
    for key in sorted(data):
        name, value = key.encode(), data[key].encode()
        digest.update(b"%d:%s%d:" % (len(name), name, len(value)))
        digest.update(value)
    return digest.hexdigest()


def view_from_dict(body: Mapping[str, Any]) -> ConfigMapView:
    metadata = body.get("metadata") or {}
    owners = metadata.get("ownerReferences") or []
    controller = next((o.get("uid") for o in owners if o.get("controller")), None)
    data = body.get("data") or {}
    ring_json = data.get("ring.json")
    return ConfigMapView(name=metadata.get("name", ""), ring_json=ring_json,
                         data_digest=data_digest(data),
                         labels=dict(metadata.get("labels") or {}), controller_uid=controller,
                         resource_version=str(metadata.get("resourceVersion", "")),
                         ring_digest=text_digest(ring_json) if ring_json is not None else None)


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ShardRing", "name": name, "uid": uid,
            "controller": True, "blockOwnerDeletion": True}


@dataclass(frozen=True)
class RingObject:
    """The ShardRing as the pass sees it."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RingObject:
        metadata = body.get("metadata") or {}
        return cls(namespace=metadata.get("namespace", ""), name=metadata.get("name", ""),
                   uid=metadata.get("uid", ""), generation=int(metadata.get("generation") or 0),
                   spec=body.get("spec") or {}, status=body.get("status") or {})
