"""What a new user sees on the real control plane (issue #21): a ring whose service does not exist
yet warns once and claims no ring is kept; `kubectl get` shows the published ring's members beside
what the source reports now; a reshard's event names who joined and left."""

from __future__ import annotations

import uuid

import pytest

from tests.operator_helpers import kubectl, wait_for

pytestmark = pytest.mark.controlplane


def columns(control_plane, namespace: str, name: str) -> dict[str, str]:
    header, row = kubectl(control_plane, "get", "shardrings", "-n", namespace, name,
                          "-o", "wide").splitlines()[:2]
    # Blank cells are spaces too: cut the row at the header's column starts.
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    ends = starts[1:] + [None]
    return {header[a:b].strip(): row[a:b].strip() for a, b in zip(starts, ends, strict=True)}


def test_a_ring_before_its_service_exists_then_joins_and_the_last_member_dies(
        operator, rings, consul_helper, control_plane, namespace):
    service = f"svc-{uuid.uuid4().hex[:8]}"
    rings.create("early", {"service": {"name": service}, "shards": 16,
                           "members": {"identity": "id"},
                           "stabilization": {"window": "0s", "maxDelay": "0s",
                                             "maxMemberLossPercent": 100}})
    ready = wait_for(lambda: (c := rings.condition("early", "Ready")) and
                     c["reason"] == "NotEnoughMembers" and c, "NotEnoughMembers")
    assert "kept" not in ready["message"] and "No ring is published" in ready["message"]
    shown = columns(control_plane, namespace, "early")
    assert (shown["MEMBERS"], shown["OBSERVED"], shown["READY"]) == ("", "0", "False")
    warnings = wait_for(lambda: rings.events("NotEnoughMembers"), "the warning")

    ids = [consul_helper.register(service, f"{service}-{i}", port=9100 + i) for i in range(2)]
    rings.wait_ring("early-ring", lambda r: len(r.assignment.members) == 2, "both members")
    # They joined in one version or in two: every Resharded event names who joined with it (an
    # Event that joined a waiting one of the same reason carries its message too).
    def joined() -> set[str]:
        return {name for event in rings.events("Resharded")
                for said in event.message.split("joined: ")[1:]
                for name in said.split(")")[0].split(", ")}
    wait_for(lambda: joined() == set(ids), "both named as joined")
    assert set(rings.get("early")["status"]["lastChange"]["joined"]) <= set(ids)
    assert len(rings.events("NotEnoughMembers")) == len(warnings) == 1  # once, not per pass

    for instance in ids:
        consul_helper.set_health(instance, passing=False)
    lost = wait_for(lambda: (c := rings.condition("early", "Ready")) and
                    c["reason"] == "NotEnoughMembers" and c, "the loss held back")
    assert "The last published ring is kept." in lost["message"]
    shown = wait_for(lambda: (c := columns(control_plane, namespace, "early"))["OBSERVED"] == "0"
                     and c, "OBSERVED 0")
    # The published ring is kept (it lost one member, or none if both failed at once): MEMBERS
    # says what it holds, OBSERVED that the source has nobody now.
    kept = rings.ring("early-ring")
    assert shown["MEMBERS"] == str(len(kept.assignment.members)) and kept.assignment.members
