"""Who may use which connection: the operator's allow-list, applied to a ring before anything is
queried for it. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from controller.core.decision import Problem, Reason
from controller.core.limits import Access
from controller.core.spec import RingConfig
from controller.core.views import CREDENTIALS_LABEL


def access_problem(namespace: str, config: RingConfig,
                    connections: Mapping[tuple[str, str], Access]) -> Problem | None:
    query = config.query
    name, words = query.connection, query.words
    access = connections.get((query.kind, name))
    if access is None or not access.serves(namespace):
        # One answer for "no such connection" and "not yours": the other connections' names,
        # and who may use them, are not this ring's author's business.
        return Problem(Reason.UNKNOWN_CONNECTION,
                       f"{words.connection_field}.connection {name!r} is not "
                       f"{words.connection_phrase} this operator offers to namespace "
                       f"{namespace!r}; ask its administrators which to use")
    if not access.allows_datacenter(query.datacenter):
        allowed = ", ".join(access.datacenters or ())
        return Problem(Reason.DATACENTER_NOT_ALLOWED,
                       f"spec.{words.spec_field}.datacenter {query.datacenter!r} is not allowed "
                       f"on connection {name!r} (allowed: {allowed}); leave it out to use the "
                       f"agent's own datacenter")
    if access.require_token and config.token is None and config.credentials is None:
        return Problem(Reason.TOKEN_REQUIRED,
                       f"connection {name!r} refuses anonymous queries: set "
                       f"{words.connection_field}.{words.secret_field} to a Secret marked "
                       f"{CREDENTIALS_LABEL}=true")
    return None
