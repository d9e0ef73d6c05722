"""Who may use a connection (``Access``) and what one ring may cost (``Limits``). Pure: read
from the operator's settings, checked by the planner before the work is done."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Access:
    """Who may use a connection, and how."""

    namespaces: tuple[str, ...] | None = None  # names or shell patterns; None: every namespace
    datacenters: tuple[str, ...] | None = None  # None: any; a ring naming none uses the agent's
    require_token: bool = False  # refuse rings that would query anonymously

    def serves(self, namespace: str) -> bool:
        return self.namespaces is None or any(fnmatchcase(namespace, p) for p in self.namespaces)

    def allows_datacenter(self, datacenter: str | None) -> bool:
        return datacenter is None or self.datacenters is None or datacenter in self.datacenters


@dataclass(frozen=True)
class Limits:
    """What one ring may cost, checked before the work is done. The defaults keep an operator
    with a 512 Mi memory limit well inside it (bench/results/limits.md)."""

    # Instances in one ring's membership query.
    max_members: int = 10_000
    # The ring engine's work, by algorithm (see ``ring_work``): 32 M is ~0.5 s of rendezvous, or
    # 4 M virtual-node points (~150 MB) for consistent.
    max_ring_work: int = 32_000_000
    # One membership reply, read no further than this (a 10 000-instance Consul reply is ~N MB).
    max_reply_bytes: int = 64 << 20
    # Seconds between two versions of one ring, whatever its window (membership churn), longer
    # in proportion for a ConfigMap over 100 KiB (planner.BYTES_PER_PUBLISH_INTERVAL); spec
    # changes apply at once.
    min_publish_interval: float = 0.1

    ENV = {"max_members": "SHARDRING_MAX_MEMBERS", "max_ring_work": "SHARDRING_MAX_RING_WORK",
           "max_reply_bytes": "SHARDRING_MAX_REPLY_BYTES",
           "min_publish_interval": "SHARDRING_MIN_PUBLISH_INTERVAL"}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Limits:
        values: dict[str, float | int] = {}
        for attribute, variable in cls.ENV.items():
            text = env.get(variable)
            if not text:
                continue
            kind = float if attribute == "min_publish_interval" else int
            try:
                value = kind(text)
            except ValueError:
                raise SettingsError(f"{variable}={text!r} is not a number") from None
            if value < 0:
                raise SettingsError(f"{variable} must not be negative")
            values[attribute] = value
        return cls(**values)  # type: ignore[arg-type]
