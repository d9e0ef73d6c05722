"""What a ring's worker remembers between passes, as one frozen value: the planner is given it
whole and returns it whole, so no field of it travels alone. Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace

from controller.core import loads, ringfile


@dataclass(frozen=True)
class Verified:
    """A ConfigMap version already found to hold exactly what its ring renders to."""

    name: str
    resource_version: str
    prometheus_relabel: bool


@dataclass(frozen=True)
class RingMemory:
    last_published: str | None = None  # ring.json as this operator last published it
    last_published_ring: ringfile.RingFile | None = None  # the same, parsed (None: not known)
    verified: Verified | None = None  # the ConfigMap version last written or checked
    pending_since: float | None = None  # when the membership first differed from the published
    handover_since: float | None = None  # when the published ring's handover started
    last_publish: float | None = None  # when this operator last published a new version
    last_publish_bytes: int = 0  # and how big its ConfigMap data was
    loads: loads.Smoothed | None = None  # the members' load reports, smoothed per shard
    watching_since: str | None = None  # when this operator's first pass of the ring ran (wall)
    balance_checked: float | None = None  # when a rebalance by load was last considered

    def written(self, ring_json: str | None, verified: Verified) -> RingMemory:
        """After the ConfigMap write: the version it made, and what it holds (the parsed ring
        is kept only if it is the text the plan rendered)."""
        same = ring_json == self.last_published
        return replace(self, last_published=ring_json,
                       last_published_ring=self.last_published_ring if same else None,
                       verified=verified)
