"""What a ring authenticates to its source with, read from its marked Secret: a token (Consul's
ACL token) or a username and password (etcd's users, ZooKeeper's digest scheme). The secret parts
never appear in reprs, logs or watcher keys (keys carry a digest). Pure."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)

    def digest(self) -> str:
        return _digest(self.value)


@dataclass(frozen=True)
class UserPassword:
    username: str
    password: str = field(repr=False)

    def digest(self) -> str:
        return _digest(f"{self.username}\0{self.password}")


Credentials = Token | UserPassword


def digest(credentials: Credentials | None) -> str:
    """Tells credentials apart in a watcher's key without holding them: "" for none."""
    return credentials.digest() if credentials is not None else ""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16] if text else ""
