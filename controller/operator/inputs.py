"""What a worker's pass starts from, and the ring's body as the worker keeps it."""

from __future__ import annotations

import copy
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from controller.core.views import ConfigMapView


class Inputs(NamedTuple):
    """What a pass starts from; a wake with the same inputs as the last completed pass is
    skipped."""

    uid: str | None
    generation: int | None
    spec: str
    watch: Hashable | None
    watch_version: int | None
    token_events: int
    ack_events: int
    configmap: str


@dataclass(frozen=True)
class SeenConfigMap:
    """The owned ConfigMap as last seen (watch events and our own writes keep it fresh, so a pass
    costs no GET); ``view`` is None when it does not exist."""

    name: str
    view: ConfigMapView | None


def plain_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the ring's body nobody else mutates, without managedFields (never read, and most
    of a small object's size)."""
    metadata = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    return copy.deepcopy({**body, "metadata": metadata})  # (managedFields are not even copied)
