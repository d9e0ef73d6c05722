"""Unit tests of the pure modules: spec parsing, membership, the reconcile decision, rendering."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import pytest
import yaml

from controller.core import ringfile
from controller.core.conditions import Condition, merge
from controller.core.decision import decide
from controller.core.limits import SettingsError
from controller.core.membership import MembershipError, members_from
from controller.core.render import RingTooLarge, configmap_data, relabel_rules
from controller.core.ring import Member, RingSpec, plan, shard_of
from controller.core.ring.loadbalance import IMBALANCE_MAX
from controller.core.spec import SpecError, parse_duration
from controller.operator.settings import OperatorConfig
from controller.sources.connections import ConsulConnection
from controller.sources.consul.decode import health_status, instance_from_health
from controller.sources.specs import parse_spec
from controller.testing.builders import consul_entry


def entry(service_id, address="10.0.0.1", port=9100, meta=None, node="n1", node_meta=None,
          weight=1, status="passing", warning_weight=1):
    """An instance as Consul reports it."""
    return instance_from_health(consul_entry(service_id, address, port, node=node, meta=meta,
                                             node_meta=node_meta, status=status,
                                             weights=(weight, warning_weight)))


# ---- spec ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,seconds", [("0", 0), ("0s", 0), ("10s", 10), ("1m30s", 90),
                                          ("250ms", 0.25), ("1.5h", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text, "f") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "s", "10x", "1m 2s", "-1s"])
def test_bad_durations_name_the_field(text):
    with pytest.raises(SpecError, match="spec.x"):
        parse_duration(text, "spec.x")


def test_spec_defaults():
    config = parse_spec("r", {"service": {"name": "svc"}})
    assert config.configmap == "r-ring" and config.ring_spec == RingSpec(256)
    assert config.query.connection == "default" and config.query.only_passing
    assert config.stabilization.window == 10 and config.stabilization.max_delay == 60
    assert config.identity == "node/id" and config.query.filter is None


def test_filter_is_part_of_the_query_and_of_the_ring_record():
    spec = {"service": {"name": "s", "filter": 'Service.Meta.shard == "yes"'}}
    a, b = parse_spec("a", spec), parse_spec("b", spec)
    assert a.query == b.query and a.query.filter == 'Service.Meta.shard == "yes"'
    assert a.query != parse_spec("c", {"service": {"name": "s"}}).query
    from controller.core.decision import membership_source
    assert membership_source(a)["filter"] == 'Service.Meta.shard == "yes"'
    assert "filter" not in membership_source(parse_spec("c", {"service": {"name": "s"}}))


def test_spec_errors_are_clear():
    with pytest.raises(SpecError, match="exactly one membership source"):
        parse_spec("r", {})
    with pytest.raises(SpecError, match="service.name"):
        parse_spec("r", {"service": {}})
    with pytest.raises(SpecError, match="found service and etcd"):
        parse_spec("r", {"service": {"name": "s"}, "etcd": {"prefix": "/s/"}})
    with pytest.raises(SpecError, match="spec.etcd.prefix"):
        parse_spec("r", {"etcd": {"prefix": "services"}})
    with pytest.raises(SpecError, match="maxDelay"):
        parse_spec("r", {"service": {"name": "s"},
                         "stabilization": {"window": "1m", "maxDelay": "10s"}})
    with pytest.raises(SpecError, match="shards"):
        parse_spec("r", {"service": {"name": "s"}, "shards": 0})


@pytest.mark.parametrize("window,max_delay", [("700ms", "0.7s"), ("9ms", "0.009s"),
                                              ("1400ms", "1.4s"), ("252s", "0.07h"),
                                              # Go reads the fraction in float64: 1s there
                                              ("1s", "0.99999999999999999s")])
def test_a_max_delay_equal_to_the_window_in_other_units_is_admitted(window, max_delay):
    # The CRD's CEL rule compares them as Go durations (whole nanoseconds): equal, so admitted.
    config = parse_spec("r", {"service": {"name": "s"},
                              "stabilization": {"window": window, "maxDelay": max_delay}})
    assert config.stabilization.window == config.stabilization.max_delay


def test_a_duration_longer_than_go_allows_is_refused():
    assert parse_duration("2562047h", "f") == 2562047 * 3600
    with pytest.raises(SpecError, match="longest duration"):
        parse_duration("9" * 400 + "h", "spec.handover.timeout")


@pytest.mark.parametrize("spec", [
    {"service": {"name": "s"}, "shards": [1]},
    {"service": {"name": "s"}, "shards": float("inf")},
    {"service": {"name": "s"}, "stabilization": "fast"},
    {"service": {"name": "s"}, "stabilization": {"minMembers": []}},
    {"service": {"name": "s", "tags": [1, "a"]}},
    {"service": "web"},
    {"etcd": ["/s/"]},
    "not a mapping",
])
def test_a_spec_stored_without_the_crds_schema_is_an_invalid_spec(spec):
    # (The CRD refuses these at apply time; a ring stored under an older CRD, or none, says so
    # as InvalidSpec rather than failing every pass with a traceback.)
    with pytest.raises(SpecError, match="does not match the ShardRing schema|not a whole number"):
        parse_spec("r", spec)


@pytest.mark.parametrize("spec,message", [
    ({"shards": True}, "spec.shards True is not a whole number"),
    ({"shards": 2.5}, "spec.shards 2.5 is not a whole number"),
    ({"replicationFactor": 1.0}, "spec.replicationFactor 1.0 is not a whole number"),
    ({"stabilization": {"maxMemberLossPercent": 500}}, "maxMemberLossPercent 500 is not between"),
    ({"stabilization": {"minMembers": -3}}, "minMembers -3 is not between 0 and 100000"),
    ({"configMap": {"name": "a..b"}}, "spec.configMap.name 'a..b' is not a ConfigMap name"),
    ({"configMap": {"name": "a.-b"}}, "'a.-b' is not a ConfigMap name"),
    ({"configMap": {"name": "Bad_Name!"}}, "'Bad_Name!' is not a ConfigMap name"),
    ({"configMap": {"name": "a" * 254}}, "is not a ConfigMap name"),
])
def test_values_the_crd_refuses_are_an_invalid_spec_when_stored_without_it(spec, message):
    # (shards: true was published as 1 shard, 2.5 as 2; a ConfigMap name the API server refuses
    # failed every pass with HTTP 422 and a traceback, the ring's status saying nothing.)
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec("r", {"service": {"name": "s"}, **spec})
    assert parse_spec("r", {"service": {"name": "s"}, "configMap": {"name": "a.b-c.d"}}
                      ).configmap == "a.b-c.d"


@pytest.mark.parametrize("field", ["", "  ", 5])
def test_a_zookeeper_address_field_that_names_nothing_is_an_invalid_spec(field):
    # ("" was blamed on every node's data: 'the JSON value has no ""'.)
    with pytest.raises(SpecError, match="spec.zookeeper.addressField .* names no JSON field"):
        parse_spec("r", {"zookeeper": {"path": "/svc", "addressField": field}})


def test_a_default_configmap_name_too_long_for_the_api_server_is_an_invalid_spec():
    assert parse_spec("r" * 248, {"service": {"name": "s"}}).configmap == "r" * 248 + "-ring"
    with pytest.raises(SpecError, match="longer than 253 characters: set spec.configMap.name"):
        parse_spec("r" * 249, {"service": {"name": "s"}})


@pytest.mark.parametrize("path", ["//", "/a//b", "/a/./b", "/..", "/a/b\n"])
def test_a_zookeeper_path_that_names_no_node_is_refused(path):
    # "//" became "", the root: its children (zookeeper itself) became the members.
    with pytest.raises(SpecError, match="not a ZooKeeper node's path"):
        parse_spec("r", {"zookeeper": {"path": path}})
    assert parse_spec("r", {"zookeeper": {"path": "/svc/web/"}}).query.path == "/svc/web"


def test_an_etcd_prefix_with_control_characters_is_refused():
    with pytest.raises(SpecError, match=r"/svc\\n\\x1b\[31m holds control characters"):
        parse_spec("r", {"etcd": {"prefix": "/svc\n\x1b[31m"}})
    for fine in ("/svc/é", "/svc/a\u00a0b", "/svc/👩\u200d💻"):  # (they print, or join)
        assert parse_spec("r", {"etcd": {"prefix": fine}}).query.prefix == f"{fine}/"


@pytest.mark.parametrize("members,field", [
    ({"identity": 5}, "identity"), ({"zoneFrom": "zone"}, "zoneFrom"),
    ({"weightFrom": "meta:"}, "weightFrom")])
def test_a_member_rule_of_another_shape_is_an_invalid_spec(members, field):
    # (It failed every pass deep in the membership code, with a traceback.)
    with pytest.raises(SpecError, match=f"spec.members.{field} .* is not one of the rules"):
        parse_spec("r", {"service": {"name": "s"}, "members": members})


@pytest.mark.parametrize("spec", [{"suspend": "false"}, {"outputs": {"prometheusRelabel": "no"}}])
def test_a_flag_written_as_a_string_is_refused_not_read_as_true(spec):
    with pytest.raises(SpecError, match="is not true or false"):
        parse_spec("r", {"service": {"name": "s"}, **spec})


def test_equal_queries_are_equal_whatever_the_tag_order():
    a = parse_spec("a", {"service": {"name": "s", "tags": ["x", "y"]}})
    b = parse_spec("b", {"service": {"name": "s", "tags": ["y", "x", "x"]}})
    assert a.query == b.query and hash(a.query) == hash(b.query)


# ---- membership ----------------------------------------------------------------------------------

def test_identity_rules():
    entries = [entry("b", "10.0.0.2", 9101, {"name": "beta"}, "node-b"),
               entry("a", "10.0.0.1", 9100, {"name": "alpha"}, "node-a")]
    assert members_from(entries).ids == ("node-a/a", "node-b/b")
    assert members_from(entries, "id").ids == ("a", "b")
    assert members_from(entries, "address").ids == ("10.0.0.1", "10.0.0.2")
    assert members_from(entries, "address:port").ids == ("10.0.0.1:9100", "10.0.0.2:9101")
    assert members_from(entries, "node").ids == ("node-a", "node-b")
    assert members_from(entries, "meta:name").ids == ("alpha", "beta")


def test_default_identity_is_unique_for_default_registrations():
    # Registered without an ID, every node's instance has the service name as its ID.
    same_id = [entry("web", node=f"node-{n}", port=80) for n in "cba"]
    assert members_from(same_id).ids == ("node-a/web", "node-b/web", "node-c/web")
    with pytest.raises(MembershipError) as refused:
        members_from(same_id, "id")
    message = str(refused.value)
    assert "two instances share identity 'web'" in message
    assert "node-b" in message and "node/id" in message  # which instances, and the way out


def test_health_status_is_the_worst_check():
    assert health_status([]) == "passing"
    assert health_status([{"Status": "passing"}, {"Status": "warning"}]) == "warning"
    assert health_status([{"Status": "warning"}, {"Status": "critical"},
                          {"Status": "passing"}]) == "critical"
    # Maintenance mode is a critical check; an unknown status is never better than critical.
    assert health_status([{"CheckID": "_service_maintenance:web", "Status": "critical"}]) == \
        "critical"
    assert health_status([{"Status": "passing"}, {"Status": "bogus"}]) == "critical"


def test_critical_instances_are_never_members_and_warning_weighs_warning():
    entries = [entry("a", status="passing", weight=10, warning_weight=2),
               entry("b", status="warning", weight=10, warning_weight=2),
               entry("c", status="critical", weight=10, warning_weight=2),
               entry("d", status="warning", weight=10, warning_weight=0)]
    assert members_from(entries, "id").ids == ("a", "b", "d")
    weighted = members_from(entries, "id", weight_from="weights")
    # Consul's own rule: Weights.Warning while warning; weight 0 takes no load at all.
    assert weighted.members == (Member("a", 10.0), Member("b", 2.0))


def test_membership_problems_are_named():
    with pytest.raises(MembershipError, match="no value for identity"):
        members_from([entry("a")], "meta:missing")
    with pytest.raises(MembershipError, match="share identity"):
        members_from([entry("a"), entry("b")], "address")
    with pytest.raises(MembershipError, match="not a number"):
        members_from([entry("a", meta={"w": "heavy"})], weight_from="meta:w")
    with pytest.raises(MembershipError, match="must be > 0"):
        members_from([entry("a", meta={"w": "0"})], weight_from="meta:w")


def test_weights_and_zones():
    membership = members_from([entry("a", weight=3, node_meta={"zone": "z1"}),
                               entry("b", node_meta={"zone": "z2"})],
                              "id", weight_from="weights", zone_from="node-meta:zone")
    assert membership.members == (Member("a", 3.0, "z1"), Member("b", 1.0, "z2"))
    membership = members_from([entry("a", node_meta={"zone": "z1"}),
                               entry("b", meta={"zone": "z2"})], "id", zone_from="node-meta:zone")
    assert membership.members == (Member("a", 1.0, "z1"), Member("b", 1.0, None))


@pytest.mark.parametrize("written", ["1_000", "inf", "nan", "1e309", "\u0663", "0", "-2", "1e16",
                                     "", " "])
def test_a_weight_is_a_plain_finite_number_within_bounds(written):
    with pytest.raises(MembershipError, match="weight"):
        members_from([entry("a", meta={"w": written})], "id", weight_from="meta:w")


def test_a_negative_weight_says_it_must_be_above_0():
    with pytest.raises(MembershipError, match="weight '-1' from meta:w must be > 0"):
        members_from([entry("a", meta={"w": "-1"})], "id", weight_from="meta:w")


def test_a_weight_too_large_for_a_float_is_refused_not_a_traceback():
    with pytest.raises(MembershipError, match="is not a number"):
        members_from([entry("a", weight=10 ** 400)], "id", weight_from="weights")


@pytest.mark.parametrize("written, weight", [("2", 2.0), (" 1.5 ", 1.5), ("3e2", 300.0),
                                             (".5", 0.5), ("1e15", 1e15)])
def test_a_weight_people_write_is_read(written, weight):
    assert members_from([entry("a", meta={"w": written})], "id",
                        weight_from="meta:w").members[0].weight == weight


# ---- reconcile decision --------------------------------------------------------------------------

def config_for(**spec):
    return parse_spec("r", {"service": {"name": "svc"}, "shards": 16, **spec})


def members(*ids):
    return members_from([entry(i, port=9000 + n) for n, i in enumerate(ids)], "id")


def published(config, membership, version=1):
    first = decide(config, membership, 5, None, shard_ring={}, now=0, seen_at=0,
                   pending_since=None, last_version=version - 1)
    assert first.changed and first.ring.version == version
    return first.ring


def test_first_ring_is_published_at_once():
    config = config_for()
    decision = decide(config, members("a", "b"), 7, None, shard_ring={}, now=0, seen_at=0,
                      pending_since=None)
    assert decision.changed and decision.ring.version == 1 and decision.ring.source_index == 7


def test_same_membership_changes_nothing():
    config = config_for()
    ring = published(config, members("a", "b"))
    decision = decide(config, members("a", "b"), 99, ring, shard_ring={}, now=100, seen_at=0,
                      pending_since=None)
    assert not decision.changed and decision.ring is ring


def test_membership_change_waits_for_the_window_then_publishes():
    config = config_for(stabilization={"window": "10s", "maxDelay": "30s"})
    ring = published(config, members("a", "b"))
    waiting = decide(config, members("a", "b", "c"), 9, ring, shard_ring={}, now=5, seen_at=1,
                     pending_since=1)
    assert not waiting.changed and waiting.wait_until == 11
    done = decide(config, members("a", "b", "c"), 9, ring, shard_ring={}, now=11, seen_at=1,
                  pending_since=1)
    assert done.changed and done.ring.version == 2 and done.added == 1


def test_max_delay_bounds_continuous_churn():
    config = config_for(stabilization={"window": "10s", "maxDelay": "30s"})
    ring = published(config, members("a", "b"))
    # The membership keeps changing (seen_at moves) but it has been pending for 30 s.
    decision = decide(config, members("a", "b", "c"), 9, ring, shard_ring={}, now=31, seen_at=29,
                      pending_since=1)
    assert decision.changed


def test_spec_changes_skip_the_window():
    config = config_for(stabilization={"window": "1h", "maxDelay": "2h"})
    ring = published(config, members("a", "b"))
    bigger = config_for(shards=32, stabilization={"window": "1h", "maxDelay": "2h"})
    decision = decide(bigger, members("a", "b"), 9, ring, shard_ring={}, now=1, seen_at=1,
                      pending_since=None)
    assert decision.changed and decision.ring.assignment.shards == 32


def test_guards_keep_the_last_ring():
    config = config_for(stabilization={"window": "0s", "maxDelay": "0s", "minMembers": 2,
                                       "maxMemberLossPercent": 50})
    ring = published(config, members("a", "b", "c", "d"))
    empty = decide(config, members(), 9, ring, shard_ring={}, now=1, seen_at=1, pending_since=None)
    assert empty.ring is ring and empty.problem.reason == "NotEnoughMembers"
    loss = decide(config, members("a"), 9, ring, shard_ring={}, now=1, seen_at=1,
                  pending_since=None)
    assert loss.ring is ring and loss.problem.reason == "NotEnoughMembers"
    config = config_for(stabilization={"window": "0s", "maxDelay": "0s",
                                       "maxMemberLossPercent": 25})
    loss = decide(config, members("a", "b"), 9, ring, shard_ring={}, now=1, seen_at=1,
                  pending_since=None)
    assert loss.ring is ring and loss.problem.reason == "MemberLoss"
    assert "maxMemberLossPercent" in loss.problem.message
    # Counted net of the members that joined with them: 3 left, 1 joined, 2 of 4 lost.
    loss = decide(config, members("a", "e"), 9, ring, shard_ring={}, now=1, seen_at=1,
                  pending_since=None)
    assert loss.problem.message.startswith("3 of 4 members left at once and only 1 joined")


def test_members_replaced_by_as_many_are_no_loss():
    # A one-member ring whose member came back under a new address was held for ever.
    config = config_for(stabilization={"window": "0s", "maxDelay": "0s"})
    ring = published(config, members("a"))
    replaced = decide(config, members("b"), 9, ring, shard_ring={}, now=1, seen_at=1,
                      pending_since=None)
    assert replaced.problem is None and replaced.ring.assignment.ids == ["b"]
    ring = published(config, members("a", "b", "c", "d"))
    replaced = decide(config, members("a", "x", "y", "z"), 9, ring, shard_ring={}, now=1,
                      seen_at=1, pending_since=None)
    assert replaced.problem is None and replaced.changed


def test_a_new_source_is_a_spec_change_not_a_member_loss():
    consul = config_for(stabilization={"window": "1h", "maxDelay": "2h"})
    ring = published(consul, members("a", "b", "c"))
    etcd = parse_spec("r", {"etcd": {"prefix": "/svc/"},
                            "stabilization": {"window": "1h", "maxDelay": "2h"}})
    switched = decide(etcd, members("x"), 9, ring, shard_ring={}, now=1, seen_at=1,
                      pending_since=None)
    assert switched.problem is None and switched.changed  # at once, like any spec change
    assert switched.ring.assignment.ids == ["x"]
    same = decide(consul, members("x"), 9, ring, shard_ring={}, now=1, seen_at=1,
                  pending_since=None)
    assert same.problem.reason == "MemberLoss"  # the same source losing two of three is held


def test_versions_continue_from_status_when_the_configmap_was_lost():
    config = config_for()
    decision = decide(config, members("a"), 3, None, shard_ring={}, now=0, seen_at=0,
                      pending_since=None, last_version=41)
    assert decision.ring.version == 42
    # Planned without the version before it: not "+1 -0, 0 shard replicas moved".
    from controller.core.events import resharded
    assert decision.afresh and "planned afresh" in resharded(decision).message
    first = decide(config, members("a"), 3, None, shard_ring={}, now=0, seen_at=0,
                   pending_since=None)
    assert not first.afresh and "0 shard replicas moved" in resharded(first).message


# ---- rendering -----------------------------------------------------------------------------------

@pytest.mark.parametrize("weights,shard_load", [
    ((1, 1), (1e20, 5.0)),  # a load past 2**53 was written as 21 digits: readers refuse them
    ((1, 5e-324), (100.0,)),  # a fair share of 0: loadImbalance was Infinity, not JSON
])
def test_a_ring_showing_extreme_loads_reads_back(weights, shard_load):
    import numpy as np

    from controller.core.balance import showing_load
    members = [Member("a", weight=weights[0]), Member("b", weight=weights[1])]
    spec = RingSpec(len(shard_load), 3 - len(shard_load))
    ring = showing_load(ringfile.RingFile(plan(members, spec)), np.array(shard_load))
    text = ringfile.render(ring)
    document = json.loads(text, parse_constant=pytest.fail)  # (Infinity and NaN are not JSON)
    assert ringfile.parse(text).member_load == ring.member_load
    assert 0 < document["loadImbalance"] <= IMBALANCE_MAX


def test_load_imbalance_is_finite_and_a_member_carrying_nothing_is_not_over():
    from controller.core.ringfile import load_imbalance
    tiny = [Member("a", weight=1), Member("b", weight=5e-324)]
    assert load_imbalance(tiny, {"a": 0.1}) == 1.0  # (0/0 for b: nothing carried)
    assert load_imbalance(tiny, {"a": 50, "b": 50}) == IMBALANCE_MAX
    assert load_imbalance([Member("a"), Member("b")], {"a": 30, "b": 10}) == 1.5


def test_ring_json_is_canonical_and_round_trips():
    assignment = plan([Member("b", 2), Member("a", zone="z")], RingSpec(32, 2))
    ring = ringfile.RingFile(assignment, version=3, source_index=9,
                             shard_ring={"namespace": "ns", "name": "r"},
                             service={"name": "s", "tags": ["t"], "nodeMeta": {"k": "v"}},
                             endpoints={"a": ringfile.Endpoint("10.0.0.1", 80)})
    text = ringfile.render(ring)
    assert text == ringfile.render(ringfile.parse(text))
    assert json.dumps(json.loads(text), sort_keys=True, separators=(",", ":")) + "\n" == text
    again = ringfile.parse(text)
    assert again.assignment == assignment and again.version == 3 and again.hash == ring.hash
    # reconcile.decide relies on this: a parsed ring equals the ring it was rendered from, and
    # any difference in what is rendered makes them unequal.
    assert again == ring
    assert again != dataclasses.replace(ring, endpoints={"a": ringfile.Endpoint("10.0.0.1", 81)})
    assert again != dataclasses.replace(ring, service={"name": "s"})


@pytest.mark.parametrize("broken", ["not json", "{}", '{"format": "shardring.io/ring/v1"}'])
def test_bad_ring_json_is_refused(broken):
    with pytest.raises(ringfile.RingFileError):
        ringfile.parse(broken)


def test_an_assignment_that_is_not_its_ring_hashs_is_refused():
    text = ringfile.render(ringfile.RingFile(plan([Member("a"), Member("b")], RingSpec(8))))
    document = json.loads(text)
    document["assignment"] = [[0]] * 8
    with pytest.raises(ringfile.RingFileError, match="ringHash is not its assignment's"):
        ringfile.parse(ringfile.canonical_json(document))
    del document["ringHash"]  # (optional: nothing to check)
    assert ringfile.parse(ringfile.canonical_json(document)).assignment.owners == (("a",),) * 8


def test_member_keys_are_safe_unique_and_stable():
    ids = ["a/b", "a_b", "a b", "ok", "", "x" * 300]
    keys = ringfile.member_keys(ids)
    assert len(set(keys.values())) == len(ids) and keys["ok"] == "ok"
    assert all(k and len(k) <= 200 and all(c.isalnum() or c in "-._" for c in k)
               for k in keys.values())
    assert ringfile.member_keys(list(reversed(ids))) == keys


def test_relabel_rules_keep_exactly_the_members_targets():
    targets = [f"10.1.{i // 256}.{i % 256}:9100" for i in range(2000)]
    shards = [1, 5, 9, 200]
    rules = yaml.safe_load(relabel_rules(shards, 256))
    assert rules[0]["action"] == "hashmod" and rules[0]["modulus"] == 256
    import re
    keep = re.compile(f"^(?:{rules[1]['regex']})$")
    kept = [t for t in targets if keep.match(str(shard_of(t, 256)))]
    # Independent computation of Prometheus' hashmod: md5, last 8 bytes, big-endian.
    import hashlib
    expected = [t for t in targets
                if int.from_bytes(hashlib.md5(t.encode()).digest()[8:], "big") % 256 in shards]
    assert kept == expected and kept
    assert not re.compile(f"^(?:{yaml.safe_load(relabel_rules([], 8))[1]['regex']})$").match("0")


def test_too_large_rings_are_refused_with_the_setting_to_lower():
    assignment = plan([Member(f"member-{i}") for i in range(5)], RingSpec(65536, 5))
    with pytest.raises(RingTooLarge, match="lower spec.shards"):
        configmap_data(ringfile.RingFile(assignment), prometheus_relabel=False)


# ---- conditions, settings ------------------------------------------------------------------------

def test_condition_transition_time_moves_only_on_status_change():
    first = merge(None, [Condition("Ready", True, "Published")], 1, "t1")
    same = merge(first, [Condition("Ready", True, "Published", "new message")], 2, "t2")
    flipped = merge(same, [Condition("Ready", False, "MemberLoss")], 3, "t3")
    assert same[0]["lastTransitionTime"] == "t1" and same[0]["observedGeneration"] == 2
    assert flipped[0]["lastTransitionTime"] == "t3" and flipped[0]["status"] == "False"


def test_a_condition_message_is_cut_to_a_readable_length():
    merged = merge(None, [Condition("Ready", False, "InvalidMembership", "x" * 600_000)], 1, "t")
    assert len(merged[0]["message"]) == 2048 and merged[0]["message"].endswith("…")
    short = merge(None, [Condition("Ready", True, "Published", "fine")], 1, "t")
    assert short[0]["message"] == "fine"


def test_consul_connections(tmp_path):
    assert OperatorConfig.from_env({}).connections["default"] == ConsulConnection("default")
    env = {"CONSUL_HTTP_ADDR": "https://consul:8501", "CONSUL_CACERT": "/ca.pem"}
    connection = OperatorConfig.from_env(env).connections["default"]
    assert (connection.host, connection.port, connection.scheme, connection.verify) == \
        ("consul", 8501, "https", "/ca.pem")
    path = tmp_path / "c.yaml"
    path.write_text("connections:\n  east: {address: '10.0.0.5:8500'}\n")
    assert set(OperatorConfig.from_env({"SHARDRING_CONSUL_CONNECTIONS": str(path)})
               .connections) == {"east"}
    path.write_text("connections: []\n")
    with pytest.raises(SettingsError):
        OperatorConfig.from_env({"SHARDRING_CONSUL_CONNECTIONS": str(path)})


# ---- the planner CLI -----------------------------------------------------------------------------

def run_cli(tmp_path, members, *args):
    path = tmp_path / "members.json"
    path.write_text(json.dumps(members))
    return subprocess.run([sys.executable, "-m", "controller", "ring", "plan", "--members",
                           str(path), *args], capture_output=True, text=True)


def test_cli_plans_and_plans_again_with_previous(tmp_path):
    first = run_cli(tmp_path, [{"id": "a"}, {"id": "b", "weight": 3}], "--shards", "64")
    assert first.returncode == 0
    ring = ringfile.parse(first.stdout)
    assert ring.assignment.loads == {"a": 16, "b": 48}
    (tmp_path / "ring.json").write_text(first.stdout)
    second = run_cli(tmp_path, [{"id": "a"}, {"id": "b", "weight": 3}, {"id": "c"}], "--shards",
                     "64", "--previous", str(tmp_path / "ring.json"))
    assert second.returncode == 0 and ringfile.parse(second.stdout).version == 2
    assert "moved shard replicas: 13" in second.stderr


@pytest.mark.parametrize("members,args,message", [
    ([{"id": "a"}, {"id": "a"}], [], "duplicate member id"),
    ([{"id": "a", "weight": 0}], [], "weights must be > 0"),
    ([{"id": "a", "weight": "x"}], [], "non-numeric weight"),
    ([{"id": "a"}], ["--replication", "2"], "needs at least 2 members"),
    ([{"name": "a"}], [], "needs a non-empty string 'id'"),
    ([{"id": "a"}], ["--algorithm", "modulo"], "invalid choice"),
])
def test_cli_bad_input_is_one_clear_line(tmp_path, members, args, message):
    result = run_cli(tmp_path, members, "--shards", "8", *args)
    assert result.returncode == 2 and message in result.stderr
    if "invalid choice" not in message:
        assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("text, message", [('{"format": "bogus"}', "format must be"),
                                           ("", "not UTF-8 JSON")])
def test_showing_a_file_that_is_no_ring_is_one_clear_line(tmp_path, text, message):
    path = tmp_path / "ring.json"
    path.write_text(text)
    for command in ("show", "lookup"):
        result = subprocess.run([sys.executable, "-m", "controller", "ring", command, str(path),
                                 *(["--member", "a"] if command == "lookup" else [])],
                                capture_output=True, text=True)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_a_reader_that_stops_early_is_no_error(tmp_path):
    ring = run_cli(tmp_path, [{"id": "a"}, {"id": "b"}], "--shards", "65536")
    (tmp_path / "ring.json").write_text(ring.stdout)
    shown = subprocess.run(f"{sys.executable} -m controller ring lookup "
                           f"{tmp_path / 'ring.json'} --member a | head -c 10; "
                           f"exit ${{PIPESTATUS[0]}}", shell=True, executable="/bin/bash",
                           capture_output=True, text=True)
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr


def test_a_metrics_port_that_cannot_listen_is_said_before_the_operator_starts():
    import socket

    from controller.cli import _ports_refused
    assert _ports_refused(18080, "127.0.0.1", "http://127.0.0.1:18080/healthz") == \
        "the metrics port 18080 is also the --liveness endpoint's port"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = _ports_refused(port, "127.0.0.1", "http://0.0.0.0:8080/healthz")
        assert refused is not None and refused.startswith(f"cannot listen on 127.0.0.1:{port}")
    assert _ports_refused(None, "0.0.0.0", None) is None
    assert _ports_refused(port, "127.0.0.1", None) is None  # free again


def test_switching_the_identity_rule_publishes_at_once_despite_the_loss_guard():
    by_id = config_for(members={"identity": "id"},
                       stabilization={"window": "1h", "maxDelay": "2h"})
    ring = published(by_id, members("a", "b", "c"))
    renamed = members_from([entry(i, port=9000 + n) for n, i in enumerate("abc")], "node/id")
    by_node = config_for(members={"identity": "node/id"},
                         stabilization={"window": "1h", "maxDelay": "2h"})
    switched = decide(by_node, renamed, 9, ring, shard_ring={}, now=1, seen_at=1,
                      pending_since=None)
    assert switched.problem is None and switched.changed  # every id is new: not "members left"
    assert [m.id for m in switched.ring.assignment.members] == ["n1/a", "n1/b", "n1/c"]
