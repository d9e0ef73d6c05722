"""A Kubernetes ring's spec: the endpoints of a Service in the ring's own namespace
(spec.kubernetes), through the operator's own API server. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from controller.core.spec import (
    IN_CLUSTER,
    ParsedSource,
    SourceSpec,
    SpecError,
    Vocabulary,
    value_of,
)

WORDS = Vocabulary(
    name="Kubernetes", spec_field="kubernetes", connection_field="spec.kubernetes",
    # (The operator reads EndpointSlices only, not Services: a Service that does not exist, one
    # without a selector, and Pods that are not ready all look alike from here.)
    empty_hint=" (no EndpointSlice lists a ready endpoint for it: check that the Service exists "
               "in the ring's namespace, that its selector matches Pods, and that they are "
               "ready)")


@dataclass(frozen=True)
class KubernetesQuery:
    """The endpoints of a Service in the ring's own namespace, from its EndpointSlices."""

    kind: ClassVar[str] = "kubernetes"
    words: ClassVar[Vocabulary] = WORDS
    connection: ClassVar[str] = IN_CLUSTER
    filter: ClassVar[None] = None
    datacenter: ClassVar[None] = None
    namespace: str
    service: str
    port: str | int | None = None  # a port's name or number; None: the Service's only port

    @property
    def target(self) -> str:
        return f"{self.namespace}/{self.service}"  # Services of one name in many namespaces

    def members_found(self, count: int) -> str:
        return f"Kubernetes lists {count} serving endpoint(s) of Service {self.service!r}"

    def describe(self) -> str:
        return f"kubernetes:{self.service}"

    def record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"source": "kubernetes", "namespace": self.namespace,
                                  "service": self.service}
        if self.port is not None:
            record["port"] = self.port
        return record


def parse(spec: Mapping[str, Any], namespace: str) -> ParsedSource:
    kubernetes = spec["kubernetes"]
    service = value_of(kubernetes, "service")
    if not service or not isinstance(service, str):
        raise SpecError("spec.kubernetes.service is required: the name of a Service in the "
                        "ring's namespace")
    port = value_of(kubernetes, "port")
    if port is not None and not _a_port(port):
        raise SpecError(f"spec.kubernetes.port is a port's name (as a Service names its ports: "
                        f"lowercase letters, digits and '-', at most 63 characters) or number "
                        f"(1-65535), not {port!r}")
    return KubernetesQuery(namespace=namespace, service=service, port=port), None, None


# (No drain rule: an endpoint drains while it terminates, as Kubernetes says.)
SPEC = SourceSpec(field="kubernetes", title="spec.kubernetes", parse=parse, drain_kinds=())


# A Service port's name (ServicePort.name, EndpointPort.name): a DNS label.
_PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _a_port(port: object) -> bool:
    if isinstance(port, bool):
        return False
    if isinstance(port, int):
        return 0 < port < 65536
    return isinstance(port, str) and len(port) <= 63 and _PORT_NAME.fullmatch(port) is not None
