"""Acknowledgements: the Lease in which a ring agent says which ring version its member applied.
Pure: the Lease's body both ways, and the convergence the operator reads from the acknowledgements.

One Lease per agent, in the ring's namespace, labelled with the ring's name and owned by the
ShardRing (garbage-collected with it). ``spec.holderIdentity`` is the member; the annotations hold
what was applied. An agent writes it only when what it applied changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.core import loads, names
from controller.core.conditions import Condition
from controller.core.printable import printable
from controller.core.rfc3339 import epoch
from controller.core.ringfile import RingFile

ACK_LABEL = "shardring.io/ack"
RING_LABEL = "shardring.io/ring"
VERSION = "shardring.io/ring-version"
HASH = "shardring.io/ring-hash"
# "ok", "failed", "none" (the agent runs no reload) or "unverified" (reloaded, but the workload
# did not show it follows the new files in time)
RELOAD = "shardring.io/reload"
APPLIED_AT = "shardring.io/applied-at"
MEMBER = "shardring.io/member"
SHOWN_LAGGING = 10  # members named in status.convergence.lagging; the count says the rest


@dataclass(frozen=True)
class Ack:
    lease: str  # the Lease's name
    ring: str
    member: str  # "" when the agent's member is not in the ring it applied
    version: int
    ring_hash: str
    reload: str  # ok | failed | none
    applied_at: str
    load: str = ""  # the member's load report (controller.core.loads), when its agent measures
    load_at: str = ""

    @property
    def healthy(self) -> bool:
        """Applied for sure: reloaded (or nothing to reload)."""
        return self.reload in ("ok", "none")


def lease_name(configmap: str, identity: str) -> str:
    """``<ConfigMap>.<identity>`` (the identity is usually the pod's name)."""
    name = f"{configmap}.{identity}".lower()
    if not names.is_subdomain(name):
        raise ValueError(f"{name!r} is not a valid Lease name: the identity must be lower-case "
                         f"letters, digits, '-' and '.' (a pod name is)")
    return name


def build_lease(namespace: str, ack: Ack, owner: Mapping[str, Any] | None,
                resource_version: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": ack.lease, "namespace": namespace,
        "labels": {ACK_LABEL: "true", RING_LABEL: ack.ring},
        "annotations": {MEMBER: ack.member, VERSION: str(ack.version), HASH: ack.ring_hash,
                        RELOAD: ack.reload, APPLIED_AT: ack.applied_at},
    }
    if ack.load:
        metadata["annotations"].update({loads.ANNOTATION: ack.load, loads.AT: ack.load_at})
    if owner:
        # Not blockOwnerDeletion: that would need update on shardrings/finalizers, and an
        # acknowledgement must never hold up the ring's deletion.
        metadata["ownerReferences"] = [{**owner, "blockOwnerDeletion": False}]
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
            "spec": {"holderIdentity": ack.member or None,
                     "renewTime": ack.applied_at}}


def ack_from_lease(body: Mapping[str, Any]) -> Ack | None:
    """The acknowledgement a Lease holds; None when it is not one (or a broken one)."""
    metadata = body.get("metadata") or {}
    labels = metadata.get("labels") or {}
    notes = metadata.get("annotations") or {}
    if labels.get(ACK_LABEL) != "true" or not labels.get(RING_LABEL):
        return None
    try:
        version = int(notes.get(VERSION, ""))
    except ValueError:
        return None
    return Ack(lease=str(metadata.get("name", "")), ring=labels[RING_LABEL],
               member=str(notes.get(MEMBER, "")), version=version,
               ring_hash=str(notes.get(HASH, "")), reload=str(notes.get(RELOAD, "none")),
               applied_at=str(notes.get(APPLIED_AT, "")),
               load=str(notes.get(loads.ANNOTATION, "")), load_at=str(notes.get(loads.AT, "")))


@dataclass(frozen=True)
class Convergence:
    status: dict[str, Any]
    condition: Condition
    drained: tuple[str, ...]  # draining members whose shards every new owner has applied


def convergence(ring: RingFile, acks: Iterable[Ack], since: str) -> Convergence:
    """Which members have applied ``ring`` (its version and hash, with a successful reload).

    ``since``: when this version was published. Members that run no agent never count as applied;
    convergence is information, the ring is published regardless.
    """
    owners = [m.id for m in ring.assignment.members]
    everyone = sorted({*owners, *ring.draining})
    applied: set[str] = set()
    failed: set[str] = set()
    unsure: set[str] = set()
    acks = list(acks)
    for ack in acks:
        if ack.member in everyone and ack.version == ring.version and \
                ack.ring_hash == ring.hash:
            (applied if ack.healthy else failed if ack.reload == "failed" else unsure) \
                .add(ack.member)
    applied -= failed | unsure  # two agents for one member: both must have applied it
    lagging = [member for member in everyone if member not in applied]
    status: dict[str, Any] = {"ringVersion": ring.version, "members": len(everyone),
                              "applied": len(applied), "since": since}
    if lagging and acks:  # (with no agent at all, nobody lags: whether they applied is unknown)
        status["lagging"] = lagging[:SHOWN_LAGGING]
        status["laggingCount"] = len(lagging)
    if failed:
        status["reloadFailed"] = sorted(failed)[:SHOWN_LAGGING]
    if not everyone:
        condition = Condition("Converged", False, "NoMembers", "the ring has no members")
    elif not lagging:
        condition = Condition("Converged", True, "Applied",
                              f"every member applied ring version {ring.version}")
    elif not acks:
        condition = Condition("Converged", None, "NoAgents",
                              "no member runs the ring agent, so whether they applied the ring "
                              "is not known (it is published regardless)")
    elif not applied and not failed:
        condition = Condition("Converged", False, "NotAcknowledged",
                              f"no member has acknowledged ring version {ring.version} yet")
    else:
        shown = ", ".join(map(printable, lagging[:SHOWN_LAGGING])) + \
            (", …" if len(lagging) > SHOWN_LAGGING else "")
        condition = Condition("Converged", False, "Lagging",
                              f"{len(applied)} of {len(everyone)} members applied ring version "
                              f"{ring.version} (published {since}); not yet: {shown}")
    owners_done = all(member in applied for member in owners)
    drained = tuple(member for member in ring.draining
                    if owners_done and member not in ring.handover)
    return Convergence(status, condition, drained)


def load_reports(acks: Iterable[Ack], shards: int) -> list[loads.Report]:
    """The load reports among the acknowledgements, timed by the wall clock they were measured
    at (seconds since 1970)."""
    found = []
    for ack in acks:
        when = epoch(ack.load_at) if ack.load else None
        if when is not None:
            found.append(loads.Report(ack.member, loads.decode(ack.load, shards), when))
    return found
