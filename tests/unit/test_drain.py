"""Graceful drain, pure: a draining member stays listed but owns no shard, its shards move once
(and only its shards), and when it later goes nothing moves."""

from __future__ import annotations

import json
import re

import pytest

from controller.core import ringfile
from controller.core.decision import decide
from controller.core.membership import members_from
from controller.core.spec import SpecError
from controller.sources.consul.decode import instance_from_health
from controller.sources.registration import from_registration
from controller.sources.specs import parse_spec
from controller.testing.builders import consul_entry as raw_entry


def consul_entry(service_id: str, tags=(), meta=None, port=9000):
    return instance_from_health(raw_entry(service_id, "10.0.0.1", port, tags=tags, meta=meta))


def config(**members):
    return parse_spec("r", {"service": {"name": "svc"}, "shards": 64, "replicationFactor": 2,
                            "members": {"identity": "id", **members},
                            "stabilization": {"window": "0s", "maxDelay": "0s",
                                              "maxMemberLossPercent": 0}})


def decided(ring_config, entries, previous, version=0):
    membership = members_from(entries, ring_config.identity, None, None,
                              ring_config.drain_from)
    return decide(ring_config, membership, 1, previous, shard_ring={}, now=0, seen_at=0,
                  pending_since=None, last_version=version)


def test_a_draining_member_gives_up_exactly_its_shards_and_its_departure_moves_nothing():
    ring_config = config(drainFrom="tag:draining")
    ids = ["a", "b", "c", "d", "e"]
    first = decided(ring_config, [consul_entry(i) for i in ids], None).ring
    held_by_c = {s for s, owners in enumerate(first.assignment.owners) if "c" in owners}
    drain = decided(ring_config, [consul_entry(i, tags=["draining"] if i == "c" else [])
                                  for i in ids], first, first.version)
    ring = drain.ring
    assert drain.changed and ring.draining == ("c",)
    assert "c" not in ring.assignment.ids and "c" in ring.endpoints
    assert drain.removed == 0  # intended: maxMemberLossPercent=0 does not hold it back
    changed = {s for s, (old, new) in enumerate(zip(first.assignment.owners,
                                                    ring.assignment.owners, strict=True))
               if old != new}
    assert changed == held_by_c  # only its shards move, and each by one replica
    assert drain.moved == len(held_by_c)
    text = ringfile.render(ring)
    assert json.loads(text)["draining"] == [{"address": "10.0.0.1", "id": "c", "port": 9000}]
    assert ringfile.parse(text) == ring  # round trip, draining included
    gone = decided(ring_config, [consul_entry(i) for i in ids if i != "c"], ring, ring.version)
    assert gone.changed and gone.moved == 0 and gone.ring.draining == ()
    assert gone.ring.assignment.owners == ring.assignment.owners


def test_drain_rules_for_every_source():
    meta = consul_entry("m", meta={"state": "draining"})
    assert members_from([meta], "id", drain_from="meta:state").draining == ("m",)
    etcd = from_registration("etcd key '/s/x'", "x",
                              json.dumps({"address": "h:1", "draining": True}).encode())
    assert members_from([etcd], "id", drain_from="field:draining").draining == ("x",)
    zk = from_registration("ZooKeeper node '/s/z'", "z", json.dumps(
        {"frontend": "h:2", "metadata": {"drain": "yes"}}).encode(), "frontend")
    assert members_from([zk], "id", drain_from="meta:drain").draining == ("z",)
    assert members_from([zk], "id", drain_from="field:drain").draining == ()
    with pytest.raises(SpecError, match="drainFrom"):
        config(drainFrom="label:x")


@pytest.mark.parametrize("source, rule, says", [
    ({"etcd": {"prefix": "/s/"}}, "tag:draining", "spec.etcd has no tags to read; use "
     "meta:<key> or field:<name>"),
    ({"zookeeper": {"path": "/s"}}, "tag:draining", "spec.zookeeper has no tags"),
    ({"service": {"name": "svc"}}, "field:draining", "(a Consul service) has no fields to read; "
     "use tag:<tag> or meta:<key>"),
    ({"kubernetes": {"service": "web"}}, "meta:drain", "a ring following spec.kubernetes reads "
     "no drain rule"),
])
def test_a_drain_rule_looking_where_the_source_has_nothing_is_refused(source, rule, says):
    # (It was accepted, and never drained anyone.)
    with pytest.raises(SpecError, match=re.escape(says)):
        parse_spec("r", {**source, "members": {"drainFrom": rule}})
    for kind in {"service": ("tag", "meta"), "etcd": ("meta", "field"),
                 "zookeeper": ("meta", "field"), "kubernetes": ()}[next(iter(source))]:
        assert parse_spec("r", {**source, "members": {"drainFrom": f"{kind}:x"}}).drain_from


def test_a_draining_pod_finds_itself_and_owns_nothing():
    from controller.client import RingVersion
    ring_config = config(drainFrom="tag:draining")
    first = decided(ring_config, [consul_entry("a", tags=["draining"], port=9001),
                                  consul_entry("b", port=9002), consul_entry("c", port=9003)],
                    None).ring
    version = RingVersion.from_text(ringfile.render(first))
    assert version.member_at("10.0.0.1", 9001) == "a"  # a draining pod still finds itself
    assert version.shards_of("a") == [] and len(version.shards_of("b")) == 64
    broken = json.loads(ringfile.render(first))
    broken["draining"] = [{"address": "x"}]
    with pytest.raises(ringfile.RingFileError):
        ringfile.parse(json.dumps(broken))


def test_a_ring_whose_members_all_drain_says_so_not_that_the_source_hides_them():
    # (It said "Consul reports 0 healthy instance(s) ... with Consul ACLs, instances the ring's
    # token may not read are hidden": the ACL hint pointed the wrong way.)
    ring_config = config(drainFrom="tag:draining")
    first = decided(ring_config, [consul_entry(i) for i in "abc"], None).ring
    drained = decided(ring_config, [consul_entry(i, tags=["draining"]) for i in "abc"], first,
                      first.version)
    assert drained.problem is not None and drained.ring is first
    assert "0 healthy instance(s) of 'svc', and 3 more draining (spec.members.drainFrom)" in \
        drained.problem.message and "ACL" not in drained.problem.message
