"""A Consul ring's spec: the instances of a service (spec.service) through a connection
(spec.consul). Pure: its parser, its record in ring.json, its words in messages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from controller.core.printable import shown
from controller.core.spec import ParsedSource, SourceSpec, SpecError, TokenRef, Vocabulary, value_of

WORDS = Vocabulary(
    name="Consul", spec_field="service", connection_field="spec.consul",
    secret_field="tokenSecretRef",
    empty_hint=" (with Consul ACLs, instances the ring's token may not read are hidden: check "
               "spec.consul.tokenSecretRef)",
    legacy_condition="ConsulReachable", unreachable_reason="ConsulUnreachable")


@dataclass(frozen=True)
class ServiceQuery:
    """What to ask Consul: one watcher serves every ring with an equal query."""

    kind: ClassVar[str] = "consul"
    words: ClassVar[Vocabulary] = WORDS
    connection: str
    service: str
    datacenter: str | None = None
    tags: tuple[str, ...] = ()
    node_meta: tuple[tuple[str, str], ...] = ()
    only_passing: bool = True
    filter: str | None = None  # Consul's filter expression, passed through as written

    @property
    def target(self) -> str:
        return self.service

    def members_found(self, count: int) -> str:
        # Without onlyPassing, instances in warning count (critical ones never do).
        what = "healthy" if self.only_passing else "passing or warning"
        return f"Consul reports {count} {what} instance(s) of {self.service!r}{self._narrowed()}"

    def _narrowed(self) -> str:
        """The spec's narrowing, said with the count: a new user's instances registered without
        the example's tag are otherwise "0 healthy instances" of a service Consul lists."""
        said = []
        if self.tags:
            said.append("tagged " + _listed([repr(tag) for tag in self.tags]))
        if self.node_meta:
            said.append("on nodes with " + _listed([f"{key}={value!r}"
                                                    for key, value in self.node_meta]))
        if self.filter:
            said.append(f"matching {shown(self.filter)}")  # (a filter may be 2,048 characters)
        if self.datacenter:
            said.append(f"in datacenter {self.datacenter!r}")
        return "".join(f", {part}" for part in said)

    def describe(self) -> str:
        return f"consul:{self.service}"

    def record(self) -> dict[str, Any]:
        # Unchanged since the first release (no "source" key): a new key would republish every
        # Consul ring.
        record: dict[str, Any] = {"name": self.service, "connection": self.connection,
                                  "onlyPassing": self.only_passing}
        if self.datacenter:
            record["datacenter"] = self.datacenter
        if self.tags:
            record["tags"] = list(self.tags)
        if self.node_meta:
            record["nodeMeta"] = dict(self.node_meta)
        if self.filter:
            record["filter"] = self.filter
        return record


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def parse(spec: Mapping[str, Any], namespace: str) -> ParsedSource:
    service = spec["service"]
    if not value_of(service, "name"):
        raise SpecError("spec.service.name is required")
    consul = value_of(spec, "consul", {})
    token_ref = value_of(consul, "tokenSecretRef")
    node_meta = value_of(service, "nodeMeta", {})
    query = ServiceQuery(
        connection=value_of(consul, "connection", "default"),
        service=service["name"],
        datacenter=value_of(service, "datacenter"),
        tags=tuple(sorted(set(value_of(service, "tags", [])))),
        node_meta=tuple(sorted((str(k), str(v)) for k, v in node_meta.items())),
        only_passing=bool(value_of(service, "onlyPassing", True)),
        filter=value_of(service, "filter") or None,
    )
    token = TokenRef(token_ref["name"], value_of(token_ref, "key", "token")) if token_ref \
        else None
    return query, token, None


SPEC = SourceSpec(field="service", title="spec.service (a Consul service)", parse=parse,
                  drain_kinds=("tag", "meta"))
