"""What a ring's worker remembers between passes, as one frozen value: the planner is given it
whole and returns it whole, so no field of it travels alone. Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace

from controller.core import loads, ringfile
from controller.core.views import ConfigMapView


@dataclass(frozen=True)
class Verified:
    """A ConfigMap version already found to hold exactly what its ring renders to."""

    name: str
    resource_version: str
    prometheus_relabel: bool


@dataclass(frozen=True)
class RingMemory:
    # ring.json as this operator last published it: parsed, and its text's digest (the text
    # itself is not kept: a thousand rings' texts weigh more than telling them apart needs)
    last_published_ring: ringfile.RingFile | None = None
    last_published_digest: str | None = None
    verified: Verified | None = None  # the ConfigMap version last written or checked
    pending_since: float | None = None  # when the membership first differed from the published
    handover_since: float | None = None  # when the published ring's handover started
    last_publish: float | None = None  # when this operator last published a new version
    last_publish_bytes: int = 0  # and how big its ConfigMap data was
    loads: loads.Smoothed | None = None  # the members' load reports, smoothed per shard
    watching_since: str | None = None  # when this operator's first pass of the ring ran (wall)
    balance_checked: float | None = None  # when a rebalance by load was last considered

    def written(self, ring_digest: str | None, verified: Verified) -> RingMemory:
        """After the ConfigMap write: the version it made, and what it holds (the parsed ring
        is kept only if it is the text the plan rendered)."""
        same = ring_digest == self.last_published_digest
        return replace(self, last_published_digest=ring_digest,
                       last_published_ring=self.last_published_ring if same else None,
                       verified=verified)

    def holds(self, view: ConfigMapView | None) -> bool:
        """``view``'s ring.json is the ring this operator published, which it keeps parsed."""
        return view is not None and view.ring_digest is not None and \
            view.ring_digest == self.last_published_digest and \
            self.last_published_ring is not None
