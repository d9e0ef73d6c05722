"""Who may use which connection: the operator's allow-list, applied to a ring before anything is
queried for it. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from controller.core.decision import Problem, Reason
from controller.core.limits import Access
from controller.core.spec import RingConfig, ServiceQuery
from controller.core.views import CREDENTIALS_LABEL


def access_problem(namespace: str, config: RingConfig,
                    connections: Mapping[tuple[str, str], Access]) -> Problem | None:
    query = config.query
    name = query.connection
    field = "spec.consul" if query.kind == "consul" else f"spec.{query.kind}"
    access = connections.get((query.kind, name))
    if access is None or not access.serves(namespace):
        # One answer for "no such connection" and "not yours": the other connections' names,
        # and who may use them, are not this ring's author's business.
        what = {"consul": "a Consul connection", "etcd": "an etcd connection"}.get(
            query.kind, f"a {query.kind} connection")
        return Problem(Reason.UNKNOWN_CONNECTION,
                       f"{field}.connection {name!r} is not {what} this operator offers to "
                       f"namespace {namespace!r}; ask its administrators which to use")
    if isinstance(query, ServiceQuery) and not access.allows_datacenter(query.datacenter):
        allowed = ", ".join(access.datacenters or ())
        return Problem(Reason.DATACENTER_NOT_ALLOWED,
                       f"spec.service.datacenter {query.datacenter!r} is not allowed on "
                       f"connection {name!r} (allowed: {allowed}); leave it out to use the "
                       f"agent's own datacenter")
    if access.require_token and config.token is None and config.credentials is None:
        secret = "tokenSecretRef" if query.kind == "consul" else "credentialsSecretRef"
        return Problem(Reason.TOKEN_REQUIRED,
                       f"connection {name!r} refuses anonymous queries: set {field}.{secret} to "
                       f"a Secret marked {CREDENTIALS_LABEL}=true")
    return None
