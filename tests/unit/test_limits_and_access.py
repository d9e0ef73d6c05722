"""Pure tests of who may use a connection and what one ring may cost: the planner refuses before
any work, with the limit's or the rule's name, and keeps the last ring."""

from __future__ import annotations

import pytest

from controller.core.instance import Instance
from controller.core.limits import Access, Limits, SettingsError
from controller.core.memory import RingMemory
from controller.core.planner import Gathered, plan_pass, prepare
from controller.core.ring import Algorithm, RingSpec, work
from controller.core.source_state import Snapshot, SourceState
from controller.core.views import ConfigMapView, RingObject
from controller.operator.settings import OperatorConfig
from controller.sources.specs import read_spec
from controller.testing.builders import instance

NOW = "2026-01-01T00:00:00Z"


def ring(namespace: str = "team-a", **spec) -> RingObject:
    return RingObject(namespace, "r", "uid-1", 1,
                      {"service": {"name": "web"}, "members": {"identity": "id"}, **spec}, {})


def degraded(plan) -> tuple[str, str]:
    found = next(c for c in plan.status["conditions"] if c["type"] == "Degraded")
    assert found["status"] == "True", found
    return found["reason"], found["message"]


def entries(count: int) -> tuple[Instance, ...]:
    return tuple(instance(f"web-{i}", "10.0.0.1", 9000 + i, node="n1") for i in range(count))


def test_a_connection_serves_only_its_namespaces_and_says_nothing_of_the_others():
    connections = {("consul", "shared"): Access(),
                   ("consul", "payments"): Access(namespaces=("payments", "pay-*"))}
    for namespace in ("payments", "pay-eu"):
        assert prepare(ring(namespace, consul={"connection": "payments"}), connections, NOW,
                       read_spec).config
    foreign = prepare(ring("team-a", consul={"connection": "payments"}), connections, NOW,
                      read_spec)
    unknown = prepare(ring("team-a", consul={"connection": "nope"}), connections, NOW, read_spec)
    assert foreign.plan and unknown.plan and foreign.config is None
    reason, message = degraded(foreign.plan)
    # Not offered and not existing read alike: nothing to probe with.
    assert (reason, message.replace("payments", "X")) == \
        (degraded(unknown.plan)[0], degraded(unknown.plan)[1].replace("nope", "X"))
    assert reason == "UnknownConnection" and "shared" not in message
    assert not foreign.plan.subscribe and foreign.plan.configmap is None


def test_datacenters_and_anonymous_queries_can_be_refused_per_connection():
    connections = {("consul", "default"): Access(datacenters=("dc1",), require_token=True)}
    token = {"connection": "default", "tokenSecretRef": {"name": "t"}}
    assert prepare(ring(consul=token), connections, NOW, read_spec).config
    assert prepare(ring(consul=token, service={"name": "web", "datacenter": "dc1"}),
                   connections, NOW, read_spec).config
    elsewhere = prepare(ring(consul=token, service={"name": "web", "datacenter": "dc2"}),
                        connections, NOW, read_spec)
    reason, message = degraded(elsewhere.plan)
    assert reason == "DatacenterNotAllowed" and "'dc2'" in message and "dc1" in message
    anonymous = prepare(ring(), connections, NOW, read_spec)
    reason, message = degraded(anonymous.plan)
    assert reason == "TokenRequired" and "tokenSecretRef" in message


def gathered(count: int, previous: ConfigMapView | None = None) -> Gathered:
    return Gathered(previous, SourceState(snapshot=Snapshot(7, entries(count), 0.0)))


def planned(count: int, limits: Limits, **spec):
    config = prepare(ring(**spec), {("consul", "default"): Access()}, NOW, read_spec).config
    assert config is not None
    return plan_pass(ring(**spec), config, gathered(count), 10.0, NOW, limits)


def test_a_ring_over_a_limit_is_refused_before_any_work_naming_the_limit():
    fine = planned(3, Limits(max_members=3))
    assert fine.configmap is not None
    too_many = planned(4, Limits(max_members=3))
    reason, message = degraded(too_many)
    assert reason == "LimitExceeded" and "maxMembers" in message and "4 instances" in message
    assert too_many.configmap is None and too_many.subscribe  # it still follows the service

    spec = {"algorithm": "consistent", "virtualNodes": 1000}
    cost = work(RingSpec(256, 1, Algorithm.CONSISTENT, 1000), 10)
    assert planned(10, Limits(max_ring_work=cost), **spec).configmap is not None
    costly = planned(10, Limits(max_ring_work=cost - 1), **spec)
    reason, message = degraded(costly)
    assert reason == "LimitExceeded" and "maxRingWork" in message and "virtualNodes" in message
    assert costly.configmap is None


def test_an_oversized_reply_is_a_limit_not_an_outage():
    config = prepare(ring(), {("consul", "default"): Access()}, NOW, read_spec).config
    source = SourceState(error="the Consul reply is larger than this operator's maxReplyBytes "
                               "limit (10 bytes)", over_limit=True)
    plan = plan_pass(ring(), config, Gathered(None, source), 10.0, NOW, Limits())
    assert degraded(plan)[0] == "LimitExceeded" and "maxReplyBytes" in degraded(plan)[1]
    reachable = next(c for c in plan.status["conditions"] if c["type"] == "ConsulReachable")
    assert (reachable["status"], reachable["reason"]) == ("True", "LimitExceeded")


def test_ring_work_follows_what_each_algorithm_costs():
    consistent = RingSpec(65536, 1, Algorithm.CONSISTENT, 10000)
    # The issue's example: 20 000 instances with 10 000 virtual nodes each.
    assert work(consistent, 20000) > Limits().max_ring_work
    # What the shipped defaults must keep working: 10 000 members at 160 virtual nodes, a big
    # balanced ring, rendezvous over a few hundred members.
    assert work(RingSpec(65536, 1, Algorithm.CONSISTENT, 160), 10000) <= Limits().max_ring_work
    assert work(RingSpec(65536, 5, Algorithm.BALANCED), 10000) <= Limits().max_ring_work
    assert work(RingSpec(65536, 3, Algorithm.RENDEZVOUS), 400) <= Limits().max_ring_work


def test_limits_and_connection_rules_are_read_strictly(tmp_path):
    env = {"SHARDRING_MAX_MEMBERS": "500", "SHARDRING_MIN_PUBLISH_INTERVAL": "0.25"}
    limits = OperatorConfig.from_env(env).limits
    assert (limits.max_members, limits.min_publish_interval) == (500, 0.25)
    with pytest.raises(SettingsError, match="SHARDRING_MAX_RING_WORK"):
        OperatorConfig.from_env({"SHARDRING_MAX_RING_WORK": "lots"})
    path = tmp_path / "c.yaml"
    path.write_text("connections:\n  p: {address: 'c:8500', namespaces: [pay-*], "
                    "datacenters: [dc1], requireToken: true}\n")
    config = OperatorConfig.from_env({"SHARDRING_CONSUL_CONNECTIONS": str(path)})
    access = config.access()[("consul", "p")]
    assert access == Access(("pay-*",), ("dc1",), True)
    # A misspelt restriction must not leave the connection open to everyone.
    path.write_text("connections:\n  p: {address: 'c:8500', namespace: [pay]}\n")
    with pytest.raises(SettingsError, match="unknown field"):
        OperatorConfig.from_env({"SHARDRING_CONSUL_CONNECTIONS": str(path)})
    path.write_text("connections:\n  p: {address: 'c:8500', requireToken: 'yes'}\n")
    with pytest.raises(SettingsError, match="requireToken"):
        OperatorConfig.from_env({"SHARDRING_CONSUL_CONNECTIONS": str(path)})
    # A CA beside plain http went unused (Helm merges a chart's caFile into one's own entry).
    path.write_text("connections:\n  p: {address: 'c:8500', scheme: http, caFile: /ca.pem}\n")
    with pytest.raises(SettingsError, match="caFile is set but scheme is http"):
        OperatorConfig.from_env({"SHARDRING_CONSUL_CONNECTIONS": str(path)})


def test_a_big_ring_waits_longer_between_versions_than_a_small_one():
    quiet = ring(stabilization={"window": "0s"})
    config = prepare(quiet, {("consul", "default"): Access()}, NOW, read_spec).config
    first = plan_pass(quiet, config, gathered(3), 10.0, NOW, Limits())
    desired = first.configmap
    assert desired is not None
    current = ConfigMapView(desired.name, desired.data["ring.json"], desired.digest,
                            desired.labels, "uid-1", "1")
    limits = Limits(min_publish_interval=0.1)

    def next_version(size: int, now: float):
        source = SourceState(snapshot=Snapshot(8, entries(4), 10.0))
        memory = RingMemory(last_publish=10.0, last_publish_bytes=size)
        return plan_pass(quiet, config, Gathered(current, source, memory=memory), now, NOW,
                         limits)
    small = next_version(1000, 10.05)
    assert small.change is None and small.requeue_after == pytest.approx(0.05)
    big = next_version(1 << 20, 10.05)  # 1 MiB: about one version a second
    assert big.change is None and big.requeue_after == pytest.approx(11 * 0.1 - 0.05)
    assert next_version(1000, 10.1).change is not None
