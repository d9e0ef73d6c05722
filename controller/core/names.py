"""Kubernetes object names as the API server checks them (RFC 1123 subdomains): a name that
does not pass is refused with HTTP 422 only when the object is written."""

from __future__ import annotations

import re

MAX_LENGTH = 253
_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


def is_subdomain(name: str) -> bool:
    """Lower-case letters, digits, '-' and '.', each dot-separated part starting and ending with
    a letter or digit, at most 253 characters."""
    return len(name) <= MAX_LENGTH and _SUBDOMAIN.match(name) is not None
