"""What the core sees of a ring's membership source: its last snapshot of instances, or why it
cannot be read. Pure: types only."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from controller.core.instance import Instance


@dataclass(frozen=True)
class Snapshot:
    index: int  # the source's own position (Consul's index), recorded in ring.json
    instances: tuple[Instance, ...]  # sorted, as the source's decoding gives them
    received: float  # monotonic time the change was seen
    # What is derived from these instances (a ring's members under its rules), kept with them:
    # every ring that reads this snapshot (and every pass of a ring in its stabilization window)
    # shares one reading instead of making its own. Not part of the snapshot's value, and never
    # passed on: a snapshot made from this one (dataclasses.replace) starts with none.
    derived: dict[Hashable, Any] = field(default_factory=dict, init=False, compare=False,
                                         repr=False)


@dataclass(frozen=True)
class SourceState:
    snapshot: Snapshot | None = None
    error: str | None = None  # a message safe to show: never contains a secret
    permission_denied: bool = False
    # The source refused the query itself (a bad filter expression); ``error`` is its explanation.
    refused: bool = False
    # The reply went over one of the operator's limits (named in ``error``) and was not read.
    over_limit: bool = False

    @property
    def silent(self) -> bool:
        """Nothing heard yet: neither a snapshot nor an error (the first reply wakes the ring)."""
        return self.snapshot is None and self.error is None
