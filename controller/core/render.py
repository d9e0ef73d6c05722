"""The ConfigMap a ring is published as. Pure: no I/O.

Keys: ``ring.json`` (canonical ring), ``member.<key>`` (that member's shards, one per line) and,
when asked, ``relabel.<key>.yaml`` (Prometheus relabel rules that keep exactly that member's
targets).
"""

from __future__ import annotations

import numpy as np

from controller.core import ringfile

CONFIGMAP_LIMIT = 1024 * 1024  # the API server refuses larger objects
_OVERHEAD = 16 * 1024  # metadata, labels, owner reference and JSON framing


class RingTooLarge(ValueError):
    """The rendered ConfigMap would exceed the API server's 1 MiB limit."""


def member_shards(ring: ringfile.RingFile) -> dict[str, list[int]]:
    """Each member's shards, draining members included: those it owns and those it still serves
    while they are handed over to their new owners."""
    members = ring.assignment.members
    owners = ring.assignment.table.ravel()
    # The table's places sorted by owner, stably (so by shard within an owner): each member's
    # shards are one slice of them (one sort, instead of a scan of the whole table per member).
    # A shard's owners are different members (the engines' rule, and the parser's), so no shard
    # appears twice in a slice.
    places = np.argsort(owners, kind="stable")
    owned = (places // ring.assignment.replicas).tolist()
    bounds = np.searchsorted(owners[places], np.arange(len(members) + 1)).tolist()
    shards: dict[str, list[int]] = {}
    for index, member in enumerate(members):
        shards[member.id] = owned[bounds[index]:bounds[index + 1]]
    for draining in ring.draining:
        shards[draining] = []
    for previous_owner, handed in ring.handover.items():
        shards[previous_owner] = sorted({*shards.get(previous_owner, []), *handed})
    return shards


def relabel_rules(shards: list[int], modulus: int, source_labels: tuple[str, ...] = ("__address__",)
                  ) -> str:
    """relabel_configs keeping targets whose hashmod(source labels, K) is one of ``shards``."""
    # Prometheus anchors relabel regexes; an empty regex matches only the empty string, so a
    # member without shards keeps nothing.
    regex = "|".join(str(s) for s in shards)
    labels = ", ".join(source_labels)
    return (
        "# Keep only this member's targets: shard = hashmod(address, shards); see ring.json.\n"
        f"- source_labels: [{labels}]\n"
        "  action: hashmod\n"
        f"  modulus: {modulus}\n"
        "  target_label: __tmp_shardring_shard\n"
        "- source_labels: [__tmp_shardring_shard]\n"
        "  action: keep\n"
        f"  regex: '{regex}'\n"
    )


def configmap_data(ring: ringfile.RingFile, prometheus_relabel: bool) -> dict[str, str]:
    keys = ring.keys()
    data = {"ring.json": ringfile.render(ring, keys)}
    modulus = ring.assignment.spec.shards
    for member_id, shards in member_shards(ring).items():
        data[f"member.{keys[member_id]}"] = "\n".join(map(str, shards)) + "\n" if shards else ""
        if prometheus_relabel:
            data[f"relabel.{keys[member_id]}.yaml"] = relabel_rules(shards, modulus)
    size = sum(len(k) + len(v.encode()) for k, v in data.items()) + _OVERHEAD
    if size > CONFIGMAP_LIMIT:
        hint = "turn off spec.outputs.prometheusRelabel or lower spec.shards" if \
            prometheus_relabel else "lower spec.shards or spec.replicationFactor"
        raise RingTooLarge(f"the ring would need {size} bytes, over the 1 MiB ConfigMap limit; "
                           f"{hint}")
    return data
