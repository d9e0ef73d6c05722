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


def plain_body(body: Mapping[str, Any], written: Mapping[str, Any] | None = None
               ) -> dict[str, Any]:
    """A copy of the ring's body nobody else mutates, without managedFields (never read, and most
    of a small object's size). ``written``: the status this operator last wrote (never mutated
    either); a body that holds that very status keeps it instead of a copy of its own, so a ring
    keeps one status, not two."""
    metadata = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    status = body.get("status")
    if written is None or status != written:
        return copy.deepcopy({**body, "metadata": metadata})  # (managedFields are not copied)
    copied = copy.deepcopy({**body, "metadata": metadata, "status": None})
    copied["status"] = written
    return copied
