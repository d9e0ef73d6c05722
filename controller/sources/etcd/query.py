"""An etcd ring's spec: one member per key under a prefix (spec.etcd). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from controller.core.printable import has_control_characters, printable
from controller.core.spec import (
    ParsedSource,
    SourceSpec,
    SpecError,
    Vocabulary,
    credentials_ref,
    value_of,
)

WORDS = Vocabulary(name="etcd", spec_field="etcd", connection_field="spec.etcd")


@dataclass(frozen=True)
class EtcdQuery:
    """The keys under a prefix in an etcd (v3) cluster: one member per key."""

    kind: ClassVar[str] = "etcd"
    words: ClassVar[Vocabulary] = WORDS
    filter: ClassVar[None] = None
    datacenter: ClassVar[None] = None
    connection: str
    prefix: str

    @property
    def target(self) -> str:
        return self.prefix

    def members_found(self, count: int) -> str:
        return f"etcd holds {count} member key(s) under {self.prefix!r}"

    def describe(self) -> str:
        return f"etcd:{self.prefix}"

    def record(self) -> dict[str, Any]:
        return {"source": "etcd", "connection": self.connection, "prefix": self.prefix}


def parse(spec: Mapping[str, Any], namespace: str) -> ParsedSource:
    etcd = spec["etcd"]
    prefix = value_of(etcd, "prefix")
    if not prefix or not str(prefix).startswith("/"):
        raise SpecError("spec.etcd.prefix is required and starts with / (for example "
                        "/services/web/)")
    if has_control_characters(str(prefix)):
        # (shown as is in the SOURCE column and in log lines)
        raise SpecError(f"spec.etcd.prefix {printable(str(prefix))} holds control characters "
                        f"(a newline, an escape): write the prefix itself")
    # A prefix is a directory: /svc/web would also match /svc/webadmin/x.
    prefix = str(prefix) if str(prefix).endswith("/") else f"{prefix}/"
    return EtcdQuery(connection=value_of(etcd, "connection", "default"), prefix=prefix), None, \
        credentials_ref(value_of(etcd, "credentialsSecretRef"))


SPEC = SourceSpec(field="etcd", title="spec.etcd", parse=parse, drain_kinds=("meta", "field"))
