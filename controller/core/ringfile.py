"""ring.json: the published, canonical form of a ring, and its parser.

Canonical means byte-stable: keys sorted, no spaces, ASCII only, members sorted by id, the
assignment as member indices. The same ring always serialises to the same bytes, so the operator
can tell "nothing changed" by comparing text, and ``ringHash`` identifies an assignment across
versions.

Reading a key's owners in any language: ``shard = uint64_be(md5(key)[8:16]) mod shards``, then
``owners = [members[i] for i in assignment[shard]]``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import shardring_client as client
from controller.core.ring import Algorithm, Assignment, Member, RingError, RingSpec, hash64
from controller.core.ring.loadbalance import imbalance

FORMAT = "shardring.io/ring/v1"
KEY_HASH = "md5-hashmod"  # shard = uint64_be(md5(key)[8:16]) mod shards == Prometheus hashmod
_UNSAFE = re.compile(r"[^-._a-zA-Z0-9]")
_MAX_KEY = 200  # ConfigMap keys are <= 253 characters, with room for "relabel." and ".yaml"
_SAFE_KEY = re.compile(rf"[-._a-zA-Z0-9]{{1,{_MAX_KEY}}}")  # an id that is its own key


class RingFileError(ValueError):
    """ring.json cannot be read; the message says where it is wrong."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str = ""
    port: int = 0


@dataclass(frozen=True)
class RingFile:
    assignment: Assignment
    version: int = 0
    source_index: int = 0
    shard_ring: Mapping[str, str] = field(default_factory=dict)  # namespace, name
    service: Mapping[str, Any] = field(default_factory=dict)
    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)
    # Members on their way out: listed (with their endpoints) but owning no shard.
    draining: tuple[str, ...] = ()
    # Make-before-break: previous owners that keep serving these shards beside their new owners
    # until the new owners acknowledge this version (member id -> shards, both sorted).
    handover: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    # A ring balanced by load: the load each member carries under this assignment, from the
    # smoothed reports when this version was made. For people and dashboards: it is not what the
    # ring is made of, so two rings that differ only in it are equal (no version for a drift).
    member_load: Mapping[str, float] = field(default_factory=dict, compare=False)

    @functools.cached_property
    def hash(self) -> str:  # computed once: rendering and status both need it
        return ring_hash(self.assignment)

    def keys(self) -> Mapping[str, str]:
        # Not cached: the published ring stays in memory for every ring, and its keys (new
        # strings for every id that is not file-safe) cost more there than computing them for
        # the one render that needs them (configmap_data hands them to render).
        return member_keys([*(m.id for m in self.assignment.members), *self.draining])

    def handed_over(self, shard: int) -> list[str]:
        """The previous owners still serving ``shard`` while it is handed over."""
        return [member for member, shards in self.handover.items() if shard in shards]


def member_keys(ids: list[str]) -> dict[str, str]:
    """A ConfigMap-safe, unique key per member id (``[-._a-zA-Z0-9]``, at most 200 characters).

    A safe id is its own key; any other id keeps its safe characters and gains a hash suffix, so two
    ids that differ only in unsafe characters still get different keys.
    """
    # Safe ids first (each is its own key, and ids are unique), then the others in order, each
    # avoiding every key taken before it.
    safe = sorted(i for i in ids if _SAFE_KEY.fullmatch(i))
    keys: dict[str, str] = dict(zip(safe, safe, strict=True))
    taken: set[str] = set(safe)
    for member_id in sorted(i for i in ids if i not in keys):
        key = ""
        salt = 0
        while not key or key in taken:
            digest = f"{hash64(f'{member_id}#{salt}' if salt else member_id):016x}"
            stem = _UNSAFE.sub("_", member_id)[: _MAX_KEY - 17]
            key = f"{stem}-{digest}" if stem else digest
            salt += 1
        keys[member_id] = key
        taken.add(key)
    return keys


def _assignment_core(assignment: Assignment) -> dict[str, Any]:
    """The assignment's document, its table left out (``_TABLE`` holds its place): the table is
    most of the text, and the ring's hash and its ring.json both hold it, so it is encoded once
    (``_table_json``) and put in place by ``_with_table``."""
    spec = assignment.spec
    core: dict[str, Any] = {
        "algorithm": spec.algorithm.value,
        "keyHash": KEY_HASH,
        "shards": spec.shards,
        "replicationFactor": spec.replication,
        "assignment": _TABLE,
        "members": [_member_core(m) for m in assignment.members],
    }
    if spec.algorithm is Algorithm.CONSISTENT:
        core["virtualNodes"] = spec.virtual_nodes
    return core


def _member_core(member: Member) -> dict[str, Any]:
    core: dict[str, Any] = {"id": member.id, "weight": _number(member.weight)}
    if member.zone is not None:
        core["zone"] = member.zone
    return core


_EXACT = 2.0**53  # past it a float no longer holds every integer


def _number(value: float) -> int | float:
    """A whole number as an integer (weight 2, not 2.0), while a float holds it exactly: a load
    of 1e20 written out as 21 digits is refused by the readers' integer rules."""
    number = float(value)
    return int(number) if number.is_integer() and abs(number) < _EXACT else number


def canonical_json(document: Any) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


# Where the table goes in a document's canonical text: "algorithm" is the only key sorted before
# "assignment", and its value is one of the algorithms' names, so the first occurrence is it.
_TABLE = 0
_TABLE_PLACE = '"assignment":0'


def _table_json(assignment: Assignment) -> str:
    """``json.dumps(assignment.owner_lists(), separators=(",", ":"))``, in half the time: each
    member's index is made text once, not once for every shard it owns."""
    if not assignment.shards:
        return "[]"
    indices = [str(index) for index in range(len(assignment.members))]
    owners = [indices[index] for index in assignment.owner_indices()]
    rows = map(",".join, zip(*[iter(owners)] * assignment.replicas, strict=True))
    return "[[" + "],[".join(rows) + "]]"


def _with_table(document: dict[str, Any], table_json: str) -> str:
    """canonical_json of ``document`` with its table in place: the same bytes as encoding it
    whole."""
    text = canonical_json(document)
    head = '{"algorithm":' + json.dumps(document["algorithm"]) + ","
    if not text.startswith(head + _TABLE_PLACE):  # a key sorted before "assignment" came
        raise AssertionError("the table's place in the document moved; see _TABLE_PLACE")
    return head + '"assignment":' + table_json + text[len(head) + len(_TABLE_PLACE):]


def ring_hash(assignment: Assignment, table_json: str | None = None) -> str:
    """sha256 of the canonical assignment (members, shards, owners), independent of the version
    (``table_json``: ``_table_json(assignment)``, when the caller has it)."""
    core = _with_table(_assignment_core(assignment),
                       _table_json(assignment) if table_json is None else table_json)
    return "sha256:" + hashlib.sha256(core.encode()).hexdigest()


def render(ring: RingFile, keys: Mapping[str, str] | None = None) -> str:
    """The canonical ring.json text (``keys``: ``ring.keys()``, when the caller has them)."""
    table_json = _table_json(ring.assignment)
    if "hash" not in ring.__dict__:  # (where functools.cached_property keeps it)
        ring.__dict__["hash"] = ring_hash(ring.assignment, table_json)
    document = _assignment_core(ring.assignment)
    keys = ring.keys() if keys is None else keys
    for entry in document["members"]:
        entry["key"] = keys[entry["id"]]
        endpoint = ring.endpoints.get(entry["id"])
        if endpoint is not None:
            entry["address"], entry["port"] = endpoint.address, endpoint.port
        if entry["id"] in ring.member_load:
            entry["load"] = _number(ring.member_load[entry["id"]])
    if ring.member_load:
        document["loadImbalance"] = load_imbalance(ring.assignment.members, ring.member_load)
    document.update(format=FORMAT, ringVersion=ring.version, ringHash=ring.hash,
                    consulIndex=ring.source_index)
    if ring.draining:
        document["draining"] = [_draining_entry(member_id, ring.endpoints.get(member_id))
                                for member_id in ring.draining]
    if ring.handover:
        document["handover"] = [{"member": member, "shards": list(ring.handover[member])}
                                for member in sorted(ring.handover)]
    if ring.shard_ring:
        document["ring"] = dict(ring.shard_ring)
    if ring.service:
        document["service"] = dict(ring.service)
    return _with_table(document, table_json) + "\n"


def load_imbalance(members: Sequence[Member], member_load: Mapping[str, float]) -> float:
    """The highest member load over its weighted fair share of the total (1.0: even), as the
    load balancer reckons it (``loadbalance.imbalance``: finite, at most IMBALANCE_MAX)."""
    carried = np.array([member_load.get(m.id, 0.0) for m in members], dtype=np.float64)
    weights = np.array([m.weight for m in members], dtype=np.float64)
    return round(imbalance(carried, carried.sum() * weights / weights.sum()), 3)


def _draining_entry(member_id: str, endpoint: Endpoint | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": member_id}
    if endpoint is not None:
        entry["address"], entry["port"] = endpoint.address, endpoint.port
    return entry


def parse(text: str) -> RingFile:
    """Read ring.json back; raise RingFileError naming the first problem. The checks are the ring
    client's (shardring_client): what the operator reads back, every reader accepts."""
    try:
        ring = client.parse(text)
    except client.RingFormatError as error:
        raise RingFileError(f"ring.json is malformed: {error}") from None
    parsed = _ring_file(ring)
    # An assignment edited by hand keeps the hash of the one it was: readers that know a ring by
    # its hash would take it for that one.
    if ring.hash and ring.hash != parsed.hash:
        raise RingFileError("ring.json is malformed: its ringHash is not its assignment's (was "
                            "the assignment edited by hand?)")
    return parsed


def hash_refuted(ring: client.Ring) -> bool:
    """Whether a ring a reader parsed carries a ringHash shown not to be its assignment's. False
    when it carries none, or when its assignment is not one this engine builds (an algorithm of
    a later version: readers need not know it), so that nothing can be told."""
    if not ring.hash:
        return False
    try:
        return bool(_ring_file(ring).hash != ring.hash)
    except (RingFileError, RingError, ValueError):
        return False


def _ring_file(ring: client.Ring) -> RingFile:
    try:
        spec = RingSpec(shards=ring.shards, replication=ring.replication_factor,
                        algorithm=Algorithm(ring.algorithm),
                        virtual_nodes=ring.virtual_nodes or RingSpec.virtual_nodes)
    except (ValueError, RingError) as error:
        raise RingFileError(f"ring.json is malformed: {error}") from None
    described = [ring.member(member) for member in (*ring.members, *ring.draining)]
    members = tuple(Member(id=m.id, weight=m.weight, zone=m.zone) for m in described
                    if not m.draining)
    table = np.array(ring.assignment, dtype=np.int64).reshape(spec.shards, spec.replication)
    return RingFile(
        assignment=Assignment(members, table, spec), version=ring.version,
        source_index=ring.source_index,
        shard_ring={"namespace": ring.namespace, "name": ring.name} if ring.name else {},
        service=dict(ring.service), draining=ring.draining, handover=dict(ring.handover),
        endpoints={m.id: Endpoint(m.address, m.port or 0) for m in described
                   if m.address is not None},
        member_load={m.id: m.load for m in described if m.load is not None})
