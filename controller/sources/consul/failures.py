"""What a failed Consul request means for the rings, in one place for the hub and the reads."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import consul
from consul.exceptions import BadRequest

from controller.sources.base import error_reason
from controller.sources.consul.client import ReplyTooLarge, TooManyConnections

# Consul answers a filter it cannot parse or evaluate with HTTP 500 and this text (400 for other
# malformed queries): a spec problem, not an outage.
_BEXPR_REFUSAL = "Failed to create boolean expression evaluator"
REFUSAL_TEXT_MAX = 300  # characters of Consul's own explanation kept for the ring's status


UNREACHABLE = "Consul cannot be reached (no connection, or no answer in time)"


@dataclass(frozen=True)
class Failure:
    message: str  # safe to show: never the token
    reason: str  # shardring_source_errors_total's reason
    denied: bool = False
    refused: bool = False  # only a spec change fixes it
    over_limit: bool = False


def describe(error: BaseException, token: str | None) -> Failure:
    denied = isinstance(error, consul.ACLPermissionDenied)
    refused = isinstance(error, BadRequest) or (
        isinstance(error, consul.ConsulException) and _BEXPR_REFUSAL in str(error))
    over_limit = isinstance(error, ReplyTooLarge)
    unreachable = isinstance(error, aiohttp.ClientConnectionError | TimeoutError)
    if denied:
        message = "Consul refused the ACL token (permission denied)"
    elif over_limit:
        message = str(error)
    elif refused:
        message = f"Consul refused the query: {_refusal(error, token)}"
    elif isinstance(error, TooManyConnections):
        message = ("Consul refused the connection (HTTP 429): this address holds more "
                   "connections to the agent than its limits.http_max_conns_per_client allows "
                   "(200 by default); something else on this address shares the limit")
    elif isinstance(error, consul.ConsulException):
        message = f"Consul query failed: Consul returned an error: {_refusal(error, token)}"
    elif unreachable:
        # One message however the connection failed (refused, reset, closed, timed out): an
        # outage is one line as it begins, whichever request finds it first.
        message = UNREACHABLE
    else:
        message = f"Consul query failed: {type(error).__name__}"
    return Failure(message, error_reason(denied=denied, refused=refused, over_limit=over_limit,
                                         unreachable=unreachable),
                   denied=denied, refused=refused, over_limit=over_limit)


# Consul's answer (HTTP 500) for a datacenter its WAN pool does not hold: a datacenter whose
# servers are all gone, or a name nobody has (a typo in the spec).
NO_PATH = "No path to datacenter"


def no_path(error: BaseException) -> bool:
    return isinstance(error, consul.ConsulException) and NO_PATH in str(error)


def unknown_datacenter(datacenter: str, known: list[str]) -> Failure:
    """A datacenter the agent knows no path to and does not list either: the spec's to fix."""
    shown = ", ".join(repr(name) for name in sorted(known)[:10])
    return Failure(f"Consul knows no datacenter {datacenter!r} (it knows {shown or 'none'}); "
                   f"check spec.service.datacenter", error_reason(refused=True), refused=True)


def _refusal(error: BaseException, token: str | None) -> str:
    """Consul's explanation (py-consul's text is "<code> <body>"), one line, bounded, and never
    carrying the token, should Consul ever echo it."""
    text = " ".join(str(error).split())
    code, _, body = text.partition(" ")
    text = body if code.isdigit() else text
    if token:
        text = text.replace(token, "***")
    return text[:REFUSAL_TEXT_MAX] or f"HTTP {code}"
