"""A ZooKeeper ring's spec: one member per child of a node (spec.zookeeper). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from controller.core.printable import has_control_characters, printable, shown
from controller.core.spec import (
    ParsedSource,
    SourceSpec,
    SpecError,
    Vocabulary,
    credentials_ref,
    value_of,
)

WORDS = Vocabulary(name="ZooKeeper", spec_field="zookeeper", connection_field="spec.zookeeper")


@dataclass(frozen=True)
class ZooKeeperQuery:
    """The children of a ZooKeeper node: one member per child (ephemeral, as the notes do)."""

    kind: ClassVar[str] = "zookeeper"
    words: ClassVar[Vocabulary] = WORDS
    filter: ClassVar[None] = None
    datacenter: ClassVar[None] = None
    connection: str
    path: str
    address_field: str = "address"  # the JSON field holding host[:port] (the notes: frontend)

    @property
    def target(self) -> str:
        return self.path

    def members_found(self, count: int) -> str:
        return f"ZooKeeper holds {count} member node(s) under {self.path!r}"

    def describe(self) -> str:
        return f"zookeeper:{self.path}"

    def record(self) -> dict[str, Any]:
        return {"source": "zookeeper", "connection": self.connection, "path": self.path,
                "addressField": self.address_field}


def parse(spec: Mapping[str, Any], namespace: str) -> ParsedSource:
    zookeeper = spec["zookeeper"]
    path = str(value_of(zookeeper, "path", ""))
    if not path.startswith("/") or len(path) < 2:
        raise SpecError("spec.zookeeper.path is required and starts with / (for example "
                        "/services/web)")
    # ZooKeeper refuses empty, "." and ".." steps and control characters; "//" would otherwise
    # have become the root, whose children (zookeeper itself among them) became the members.
    steps = path.rstrip("/").split("/")[1:]
    if not steps or any(step in ("", ".", "..") for step in steps) or \
            has_control_characters(path):
        raise SpecError(f"spec.zookeeper.path {printable(path)} is not a ZooKeeper node's path "
                        f"(steps separated by single slashes, none empty, '.' or '..', no "
                        f"control characters; for example /services/web)")
    address_field = value_of(zookeeper, "addressField", "address")
    if not isinstance(address_field, str) or not address_field.strip():
        raise SpecError(f"spec.zookeeper.addressField {shown(address_field)} names no JSON "
                        f"field (leave it out for \"address\")")
    query = ZooKeeperQuery(connection=value_of(zookeeper, "connection", "default"),
                           path=path.rstrip("/"), address_field=address_field)
    return query, None, credentials_ref(value_of(zookeeper, "credentialsSecretRef"))


SPEC = SourceSpec(field="zookeeper", title="spec.zookeeper", parse=parse,
                  drain_kinds=("meta", "field"))
