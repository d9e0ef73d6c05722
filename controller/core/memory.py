"""What a ring's worker remembers between passes, as one frozen value: the planner is given it
whole and returns it whole, so no field of it travels alone. Pure."""

from __future__ import annotations

from dataclasses import dataclass

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


    def written(self, ring_json: str | None, verified: Verified) -> RingMemory:
        """After the ConfigMap write: the version it made, and what it holds (the parsed ring
        is kept only if it is the text the plan rendered)."""
        same = ring_json == self.last_published
        return RingMemory(ring_json, self.last_published_ring if same else None, verified,
                          self.pending_since, self.handover_since, self.last_publish,
                          self.last_publish_bytes, self.loads, self.watching_since)
