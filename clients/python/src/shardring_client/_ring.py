"""One ring version, read from ring.json and checked as docs/ring-format.md specifies."""

from __future__ import annotations

import hashlib
import json
import math
import os
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

FORMAT = "shardring.io/ring/v1"
KEY_HASH = "md5-hashmod"

Key = Union[str, bytes]


class RingFormatError(ValueError):
    """ring.json cannot be used; the message names the first field that is wrong."""


def shard_of(key: Key, shards: int) -> int:
    """``uint64_be(md5(key)[8:16]) mod shards``: Prometheus' ``hashmod`` of the key's UTF-8
    bytes, so a relabel rule and this function put a target in the same shard."""
    if shards < 1:
        raise ValueError("shards must be at least 1")
    data = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    return int.from_bytes(hashlib.md5(data).digest()[8:16], "big") % shards


@dataclass(frozen=True)
class Member:
    """A member as ring.json lists it. ``draining``: on its way out, owning no shard (it may
    still serve shards it hands over)."""

    id: str
    key: str | None = None  # its files' names in the ConfigMap (member.<key>)
    weight: float = 1.0
    zone: str | None = None
    address: str | None = None
    port: int | None = None
    draining: bool = False
    # A ring balanced by load: the load it carries under this assignment, as measured when the
    # version was made (in the unit of the load reports). None otherwise.
    load: float | None = None


_short = reprlib.Repr()
_short.maxstring = _short.maxother = 40


def _shown(value: Any) -> str:
    """A value for an error message: short, whatever it holds."""
    return _short.repr(value)


def _integer(value: Any, where: str, minimum: int = 0) -> int:
    # JSON's true is not a number here, and 4.0 is not an integer, nor is anything beyond 64
    # bits: Go's decoder agrees.
    if type(value) is not int or not minimum <= value < 1 << 63:
        raise RingFormatError(f"{where} must be an integer >= {minimum}, not {_shown(value)}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RingFormatError(f"{where} must be a string, not {_shown(value)}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise RingFormatError(f"{where} must be a list, not {type(value).__name__}")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RingFormatError(f"{where} must be an object, not {type(value).__name__}")
    return value


def _optional(document: dict[str, Any], name: str, default: Any) -> Any:
    """An optional field: absent and null both mean its default (as Go's decoder reads them)."""
    value = document.get(name)
    return default if value is None else value


def _member(entry: Any, where: str, draining: bool) -> Member:
    entry = _object(entry, where)
    member_id = _text(entry.get("id"), f"{where}.id")
    if not member_id:
        raise RingFormatError(f"{where}.id must not be empty")
    weight = _optional(entry, "weight", 1)
    if not _finite(weight) or not weight > 0:
        raise RingFormatError(f"{where}.weight must be a finite number > 0, not "
                              f"{_shown(weight)}")
    load = entry.get("load")
    if load is not None and (not _finite(load) or load < 0):
        raise RingFormatError(f"{where}.load must be a finite number >= 0, not {_shown(load)}")
    zone = entry.get("zone")
    if zone is not None:
        _text(zone, f"{where}.zone")
    address, port = entry.get("address"), entry.get("port")
    if address is not None:
        _text(address, f"{where}.address")
    if port is not None:
        _integer(port, f"{where}.port")
    key = entry.get("key")
    if key is not None:
        _text(key, f"{where}.key")
    return Member(member_id, key, float(weight), zone, address, port, draining,
                  None if load is None else float(load))


def _finite(number: Any) -> bool:
    """A JSON number (not true) that is a finite float."""
    try:
        return type(number) in (int, float) and math.isfinite(number) and \
            math.isfinite(float(number))
    except OverflowError:  # an integer beyond any float
        return False


def _table(rows: list[Any], replication: int, members: int) -> tuple[tuple[int, ...], ...]:
    """The assignment as tuples, checked in bulk (a ring has up to 65,536 rows, read on every
    new version); a row that fails is then found and named."""
    table = tuple(tuple(row) if type(row) is list else () for row in rows)
    flat = [i for row in table for i in row]
    good = len(flat) == len(table) * replication and \
        all(len(row) == replication for row in table) and \
        set(map(type, flat)) <= {int} and (not flat or (min(flat) >= 0 and max(flat) < members))
    if good and replication > 1:
        good = all(len(set(row)) == replication for row in table)
    if not good:
        shard, row = next((shard, row) for shard, row in enumerate(rows)
                          if type(row) is not list or len(row) != replication or
                          any(type(i) is not int or not 0 <= i < members for i in row) or
                          len(set(row)) != len(row))
        raise RingFormatError(f"assignment[{shard}] must hold {replication} different member "
                              f"indices below {members}, not {_shown(row)}")
    return table


class Ring:
    """One immutable ring version. Build it with :func:`parse` or :func:`load`."""

    def __init__(self, document: Mapping[str, Any]):
        document = _object(document, "ring.json")
        if document.get("format") != FORMAT:
            raise RingFormatError(f"format must be {FORMAT!r}, not "
                                  f"{_shown(document.get('format'))}: a reader of another "
                                  "format version cannot read it")
        if _optional(document, "keyHash", KEY_HASH) != KEY_HASH:
            raise RingFormatError(f"keyHash {_shown(document.get('keyHash'))} is not {KEY_HASH!r}: "
                                  "this reader cannot compute its shards")
        self.shards = _integer(document.get("shards"), "shards", 1)
        self.replication_factor = _integer(document.get("replicationFactor"),
                                           "replicationFactor", 1)
        self.version = _integer(_optional(document, "ringVersion", 0), "ringVersion")
        self.source_index = _integer(_optional(document, "consulIndex", 0), "consulIndex")
        self.hash = _text(_optional(document, "ringHash", ""), "ringHash")
        self.algorithm = _text(_optional(document, "algorithm", ""), "algorithm")
        # Only the consistent algorithm has virtual nodes; readers need not know them.
        self.virtual_nodes: int | None = None if document.get("virtualNodes") is None else \
            _integer(document["virtualNodes"], "virtualNodes", 1)
        ring = _object(_optional(document, "ring", {}), "ring")
        self.namespace = _text(_optional(ring, "namespace", ""), "ring.namespace")
        self.name = _text(_optional(ring, "name", ""), "ring.name")
        self.service: Mapping[str, Any] = _object(_optional(document, "service", {}), "service")

        owners = [_member(e, f"members[{i}]", False)
                  for i, e in enumerate(_list(document.get("members"), "members"))]
        ids = [m.id for m in owners]
        if ids != sorted(ids) or len(set(ids)) != len(ids):
            raise RingFormatError("members must be sorted by id, each id once")
        draining = [_member(e, f"draining[{i}]", True)
                    for i, e in enumerate(_list(_optional(document, "draining", []), "draining"))]
        everyone = ids + [m.id for m in draining]
        if len(set(everyone)) != len(everyone):
            raise RingFormatError("a draining member must not also be a member, nor be listed "
                                  "twice")
        if len(owners) < self.replication_factor:
            raise RingFormatError(f"replicationFactor {self.replication_factor} needs at least "
                                  f"as many members, not {len(owners)}")
        self._members: dict[str, Member] = {m.id: m for m in owners + draining}
        self.members: tuple[str, ...] = tuple(ids)
        self.draining: tuple[str, ...] = tuple(m.id for m in draining)

        rows = _list(document.get("assignment"), "assignment")
        if len(rows) != self.shards:
            raise RingFormatError(f"assignment has {len(rows)} rows for {self.shards} shards")
        self.assignment: tuple[tuple[int, ...], ...] = _table(rows, self.replication_factor,
                                                            len(owners))
        self._table = self.assignment
        self._by_member: dict[str, list[int]] | None = None

        handover: dict[str, tuple[int, ...]] = {}
        for i, entry in enumerate(_list(_optional(document, "handover", []), "handover")):
            entry = _object(entry, f"handover[{i}]")
            member = _text(entry.get("member"), f"handover[{i}].member")
            if member not in self._members or member in handover:
                raise RingFormatError(f"handover[{i}].member {_shown(member)} must be a member "
                                      "or draining, once")
            shards = [_integer(s, f"handover[{i}].shards") for s in
                      _list(entry.get("shards"), f"handover[{i}].shards")]
            if any(s >= self.shards for s in shards):
                raise RingFormatError(f"handover[{i}] names a shard the ring does not have")
            handover[member] = tuple(sorted(set(shards)))
        self.handover: Mapping[str, tuple[int, ...]] = handover
        self._handed: dict[int, list[str]] = {}
        for member in sorted(handover):
            for shard in handover[member]:
                self._handed.setdefault(shard, []).append(member)

    def __repr__(self) -> str:
        return (f"Ring(version={self.version}, members={len(self.members)}, "
                f"shards={self.shards}, replication_factor={self.replication_factor})")

    # ---- keys and shards --------------------------------------------------------------------

    def shard(self, key: Key) -> int:
        """The key's shard."""
        return shard_of(key, self.shards)

    def assigned(self, shard: int) -> list[str]:
        """The shard's owners in this version, primary first (``replicationFactor`` of them)."""
        if not 0 <= shard < self.shards:
            raise IndexError(f"shard {shard} is not one of this ring's {self.shards}")
        return [self.members[i] for i in self._table[shard]]

    def handing_over(self, shard: int) -> list[str]:
        """Previous owners still serving the shard until its new owners acknowledge this
        version (make-before-break); empty when the shard is not being handed over."""
        return list(self._handed.get(shard, ()))

    def owners(self, key: Key) -> list[str]:
        """Everyone who serves the key's shard now: its owners (primary first), then any
        previous owner still serving it while it is handed over. Serve the key if you are in
        this list: during a handover, old and new owner both do, so no key is dropped."""
        return self.owners_of(self.shard(key))

    def owners_of(self, shard: int) -> list[str]:
        """Everyone who serves ``shard`` now: :meth:`assigned`, then :meth:`handing_over`."""
        return self.assigned(shard) + self.handing_over(shard)

    def owner(self, key: Key) -> str:
        """The key's primary owner."""
        return self.members[self._table[self.shard(key)][0]]

    def is_mine(self, key: Key, me: str) -> bool:
        """Whether ``me`` serves the key now (any replica, or as a previous owner handing it
        over)."""
        return me in self.owners(key)

    def shards_of(self, member: str) -> list[int]:
        """The shards ``member`` serves now, ascending: those it owns and those it still hands
        over. A draining member owns none."""
        owned = self._owned().get(member, ())
        handed = self.handover.get(member, ())
        return sorted({*owned, *handed}) if handed else list(owned)

    def shard_counts(self) -> dict[str, int]:
        """Shards owned per member (every replica counts), by member id."""
        return {member: len(shards) for member, shards in self._owned().items()}

    def _owned(self) -> dict[str, list[int]]:
        if self._by_member is None:  # one pass over the table, the first time it is needed
            owned: dict[str, list[int]] = {m: [] for m in self.members}
            for shard, row in enumerate(self._table):
                for i in row:
                    owned[self.members[i]].append(shard)
            self._by_member = owned
        return self._by_member

    # ---- members ------------------------------------------------------------------------------

    def member(self, member_id: str) -> Member:
        """A member or draining member by id (KeyError if the ring has none)."""
        return self._members[member_id]

    def member_at(self, address: str, port: int | None = None) -> str | None:
        """The one member (or draining member) registered at ``address`` (and ``port``; None or
        0: any): a pod knows its own IP and port without knowing its identity. None if none or
        several."""
        found = [m.id for m in self._members.values() if address and m.address == address and
                 (not port or m.port == port)]
        return found[0] if len(found) == 1 else None

    def find(self, identity: str | None = None, address: str | None = None,
             port: int | None = None) -> str:
        """This member's id, by identity or by address[:port]; LookupError when the ring does
        not list it (not registered, not healthy yet, or gone)."""
        if identity is not None:
            if identity in self._members:
                return identity
            raise LookupError(f"{identity!r} is not in ring version {self.version}")
        if address is None:
            raise ValueError("give an identity or an address")
        found = self.member_at(address, port)
        if found is None:
            raise LookupError(f"no single member of ring version {self.version} is registered "
                              f"at {address}:{'*' if port is None else port}")
        return found


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")  # Python's json would accept it


class _Huge:
    """An integer literal too long to be any field's value (Python's int() refuses over 4,300
    digits): fine in a field readers ignore, refused by every checked field."""


def _json_int(literal: str) -> Any:
    return int(literal) if len(literal) <= 20 else _Huge()


def parse(text: str | bytes) -> Ring:
    """A ring from ring.json's text (bytes must be UTF-8); RingFormatError names what is
    wrong."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        document = json.loads(text, parse_constant=_not_json, parse_int=_json_int)
    except RecursionError:
        raise RingFormatError("ring.json is nested too deeply") from None
    except ValueError as error:  # (UnicodeDecodeError is one)
        raise RingFormatError(f"ring.json is not UTF-8 JSON: {str(error)[:120]}") from None
    return Ring(document)


def load(path: str | os.PathLike[str]) -> Ring:
    """A ring from a ring.json file, or from a directory holding one (a mounted ConfigMap or the
    agent's directory: read consistently, see :func:`shardring_client.read`)."""
    from shardring_client._directory import read
    return read(path)

