"""Typed inputs and outputs of the ring engine."""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_SHARDS = 65536
MAX_REPLICATION = 5


class RingError(ValueError):
    """The inputs cannot produce a ring; the message says what to change."""


class Algorithm(str, enum.Enum):
    BALANCED = "balanced"
    CONSISTENT = "consistent"
    RENDEZVOUS = "rendezvous"


# Slots: a ring remembers every member of its published version (a thousand rings, a hundred
# members each).
@dataclass(frozen=True, order=True, slots=True)
class Member:
    id: str
    weight: float = 1.0
    zone: str | None = None


@dataclass(frozen=True)
class RingSpec:
    shards: int
    replication: int = 1
    algorithm: Algorithm = Algorithm.BALANCED
    virtual_nodes: int = 160

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= MAX_SHARDS:
            raise RingError(f"shards must be between 1 and {MAX_SHARDS}, got {self.shards}")
        if not 1 <= self.replication <= MAX_REPLICATION:
            raise RingError(
                f"replicationFactor must be between 1 and {MAX_REPLICATION}, got {self.replication}"
            )
        if not 1 <= self.virtual_nodes <= 10000:
            raise RingError(f"virtualNodes must be between 1 and 10000, got {self.virtual_nodes}")
        object.__setattr__(self, "algorithm", Algorithm(self.algorithm))


def validate_members(members: Sequence[Member], spec: RingSpec) -> list[Member]:
    """Members sorted by id, after checking what the engine relies on."""
    ordered = sorted(members, key=lambda m: m.id)
    for previous, current in zip(ordered, ordered[1:], strict=False):
        if previous.id == current.id:
            raise RingError(f"duplicate member id {current.id!r}")
    for member in ordered:
        if not isinstance(member.weight, (int, float)) or not math.isfinite(member.weight) \
                or member.weight <= 0:
            raise RingError(f"member {member.id!r} has weight {member.weight!r}; "
                            f"weights must be > 0")
    if len(ordered) < spec.replication:
        raise RingError(
            f"replicationFactor {spec.replication} needs at least {spec.replication} members, "
            f"have {len(ordered)}"
        )
    return ordered


class Assignment:
    """Shard -> owners. ``table[s]`` holds indices into ``members`` (sorted by id), primary
    first."""

    __slots__ = ("members", "_table", "spec")

    def __init__(self, members: tuple[Member, ...], table: np.ndarray, spec: RingSpec):
        self.members = members
        # Kept in the smallest integer type that holds every index: each ring's published table
        # stays in memory, and 16 bits are a quarter of the engine's 64 (12 KB less a ring at
        # 1,024 shards, R=2).
        self._table = table.astype(np.int16 if len(members) <= np.iinfo(np.int16).max
                                   else np.int32)
        self.spec = spec

    @property
    def table(self) -> np.ndarray:
        """A fresh int64 copy, to compute on (``index * shards`` overflows 16 bits): microseconds
        even for 65,536 shards, and nobody can change the kept one through it."""
        return self._table.astype(np.int64)

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.members]

    def owner_lists(self) -> list[list[int]]:
        """The table as lists (each shard's owners' indices, primary first), for JSON."""
        return self._table.tolist()  # type: ignore[no-any-return]

    def owner_indices(self) -> list[int]:
        """Every shard's owners' indices in one list, shard after shard (``replicas`` each)."""
        return self._table.ravel().tolist()

    @property
    def shards(self) -> int:
        return int(self._table.shape[0])

    @property
    def replicas(self) -> int:
        """Owners a shard (the table's width)."""
        return int(self._table.shape[1])

    @property
    def owners(self) -> tuple[tuple[str, ...], ...]:
        """Each shard's owners by id. Built on every call, not kept: a published ring stays in
        memory for every ring, and a tuple per shard would weigh more than the table itself
        (about 70 KB for 1,024 shards, R=2). Callers read it once."""
        ids = self.ids
        return tuple(tuple(ids[i] for i in row) for row in self.owner_lists())

    @property
    def loads(self) -> dict[str, int]:
        counts = np.bincount(self._table.ravel(), minlength=len(self.members))
        return {m.id: int(c) for m, c in zip(self.members, counts, strict=True)}

    def shards_of(self, member_id: str) -> list[int]:
        index = self.ids.index(member_id)
        return np.nonzero((self._table == index).any(axis=1))[0].tolist()

    def table_for(self, ids: list[str]) -> np.ndarray:
        """This assignment's table re-indexed onto another member list (-1 where a member is
        gone)."""
        position = {member_id: i for i, member_id in enumerate(ids)}
        remap = np.array([position.get(m.id, -1) for m in self.members] + [-1], dtype=np.int64)
        remapped: np.ndarray = remap[self._table]
        return remapped

    def moved_from(self, previous: Assignment | None) -> int:
        """Shard replicas owned by a member that did not own that shard before (0 without one).

        When the shard count changed every replica counts as moved: shard numbers mean other keys.
        """
        if previous is None:
            return 0
        if previous.shards != self.shards:
            return int(self._table.size)
        before = previous.table_for(self.ids)
        kept = (self._table[:, :, None] == before[:, None, :]).any(axis=2)
        return int((~kept).sum())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Assignment) and self.spec == other.spec \
            and self.members == other.members and np.array_equal(self._table, other._table)

    def __repr__(self) -> str:
        return f"Assignment(members={len(self.members)}, shards={self.shards}, spec={self.spec})"
