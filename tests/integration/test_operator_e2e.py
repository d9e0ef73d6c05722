"""The operator end to end on the real kube-apiserver and Consul agent."""

from __future__ import annotations

import re
import time
import uuid

import pytest

from controller.core import ringfile
from tests.inprocess import InProcessOperator
from tests.operator_helpers import kubectl, wait_for

pytestmark = pytest.mark.controlplane


def service_name() -> str:
    return f"svc-{uuid.uuid4().hex[:8]}"


def register(consul_helper, service: str, count: int, **kwargs) -> list[str]:
    return [consul_helper.register(service, f"{service}-{i}", port=9100 + i, **kwargs)
            for i in range(count)]


def ring_spec(service: str, **extra) -> dict:
    spec = {"service": {"name": service}, "shards": 64,
            "stabilization": {"window": "0s", "maxDelay": "0s"}}
    spec.update(extra)
    return spec


def worker(operator, namespace: str, name: str):
    return operator.workers[(namespace, name)]


def test_ring_is_published_then_follows_a_failing_instance(
        operator, rings, consul_helper, control_plane, namespace):
    service = service_name()
    ids = register(consul_helper, service, 5)
    rings.create("scrapers", ring_spec(service, members={"identity": "id"}))
    ring = rings.wait_ring("scrapers-ring", lambda r: len(r.assignment.members) == 5,
                           "a ring of 5 members")
    assert [m.id for m in ring.assignment.members] == sorted(ids)
    assert ring.version == 1 and ring.assignment.shards == 64
    data = rings.configmap("scrapers-ring").data
    keys = ring.keys()
    for member in ring.assignment.members:
        listed = [int(line) for line in data[f"member.{keys[member.id]}"].split()]
        assert listed == ring.assignment.shards_of(member.id)
    assert sorted(len(ring.assignment.shards_of(i)) for i in ids) == [12, 13, 13, 13, 13]
    wait_for(lambda: (rings.condition("scrapers", "Ready") or {}).get("status") == "True",
             "Ready=True")
    status = rings.get("scrapers")["status"]
    assert status["members"] == 5 and status["ringVersion"] == 1
    assert status["ringHash"] == ring.hash and status["configMapName"] == "scrapers-ring"
    table = kubectl(control_plane, "get", "shardrings", "-n", namespace, "-o", "wide")
    header, row = table.splitlines()[:2]
    assert header.split()[:7] == ["NAME", "SOURCE", "MEMBERS", "OBSERVED", "SHARDS", "VERSION",
                                  "READY"]
    assert row.split()[:7] == ["scrapers", f"consul:{service}", "5", "5", "64", "1", "True"]
    assert header.split()[-3:] == ["MOVED", "REACHABLE", "REASON"]
    assert row.split()[-2:] == ["True", "Published"]
    configmap = rings.configmap("scrapers-ring")
    assert configmap.metadata.labels["app.kubernetes.io/managed-by"] == "shardring-operator"
    owner = configmap.metadata.owner_references[0]
    assert owner.kind == "ShardRing" and owner.controller
    # managedFields name the operator (not its client library's default, "OpenAPI-Generator").
    assert {m.manager for m in configmap.metadata.managed_fields} == {"shardring-operator"}
    written = rings.custom.get_namespaced_custom_object(
        "shardring.io", "v1alpha1", namespace, "shardrings", "scrapers")["metadata"]
    assert {m["manager"] for m in written["managedFields"] if m.get("subresource") == "status"} \
        == {"shardring-operator"}

    before = ring
    consul_helper.set_health(ids[2], passing=False)
    after = rings.wait_ring("scrapers-ring", lambda r: len(r.assignment.members) == 4,
                            "the failed member to leave", timeout=10)
    assert after.version == 2
    gone = set(before.assignment.shards_of(ids[2]))
    for shard in range(64):
        if shard not in gone:
            assert after.assignment.owners[shard] == before.assignment.owners[shard]
    assert after.assignment.moved_from(before.assignment) == len(gone)
    wait_for(lambda: rings.get("scrapers")["status"].get("ringVersion") == 2, "status version 2")
    assert rings.get("scrapers")["status"]["lastChange"]["movedShards"] == len(gone)
    events = wait_for(lambda: rings.events("Resharded"), "a Resharded event")
    assert any("4 members" in e.message and f"{len(gone)} shard replicas moved" in e.message
               for e in events)


def test_a_reply_without_a_membership_change_writes_nothing(operator, rings, consul_helper,
                                                            consul_client, namespace):
    service = service_name()
    ids = register(consul_helper, service, 3)
    rings.create("quiet", ring_spec(service))
    rings.wait_ring("quiet-ring", lambda r: len(r.assignment.members) == 3, "3 members")
    wait_for(lambda: (rings.condition("quiet", "Ready") or {}).get("status") == "True", "Ready")
    time.sleep(1)
    configmap_version = rings.configmap("quiet-ring").metadata.resource_version
    ring_version = rings.get("quiet")["metadata"]["resourceVersion"]
    writes = worker(operator, namespace, "quiet").writes
    index, _ = consul_client.health.service(service, passing=True)
    # New metadata nobody uses bumps the service's Consul index, so the blocking query returns,
    # with exactly the same members.
    consul_helper.register(service, ids[0], port=9100, meta={"build": "2"})
    wait_for(lambda: int(consul_client.health.service(service, passing=True)[0]) > int(index),
             "the Consul index to move")
    time.sleep(1.5)
    assert rings.configmap("quiet-ring").metadata.resource_version == configmap_version
    assert rings.get("quiet")["metadata"]["resourceVersion"] == ring_version
    assert worker(operator, namespace, "quiet").writes == writes


def test_spec_changes_apply_at_once(operator, rings, consul_helper, control_plane, namespace):
    service = service_name()
    register(consul_helper, service, 2, tags=["blue"])
    register_green = [consul_helper.register(service, f"{service}-g{i}", port=9200 + i,
                                             tags=["green"]) for i in range(3)]
    rings.create("reshape", ring_spec(service, members={"identity": "id"},
                                      stabilization={"window": "1h", "maxDelay": "2h"}))
    rings.wait_ring("reshape-ring", lambda r: len(r.assignment.members) == 5, "5 members")
    rings.patch("reshape", {"shards": 128})
    ring = rings.wait_ring("reshape-ring", lambda r: r.assignment.shards == 128, "128 shards",
                           timeout=10)
    assert ring.version == 2
    rings.patch("reshape", {"service": {"name": service, "tags": ["green"]}})
    ring = rings.wait_ring("reshape-ring",
                           lambda r: [m.id for m in r.assignment.members] == sorted(register_green),
                           "only green members", timeout=10)
    assert ring.version == 3
    # A change the ring cannot take (5 replicas of 3 members): the last ring stays, and so do
    # the columns that describe it.
    rings.patch("reshape", {"shards": 32, "replicationFactor": 5})
    wait_for(lambda: (rings.condition("reshape", "Degraded") or {}).get("reason") ==
             "NotEnoughMembers", "the change refused")
    row = kubectl(control_plane, "get", "shardring", "reshape", "-n", namespace).splitlines()[1]
    assert row.split()[2:5] == ["3", "3", "128"]  # MEMBERS, OBSERVED, SHARDS


def test_two_rings_on_one_service_share_one_consul_query(operator, rings, consul_helper):
    service = service_name()
    register(consul_helper, service, 3)
    rings.create("first", ring_spec(service))
    rings.create("second", ring_spec(service, shards=32))
    rings.wait_ring("first-ring", lambda r: len(r.assignment.members) == 3, "first ring")
    rings.wait_ring("second-ring", lambda r: len(r.assignment.members) == 3, "second ring")
    registry = operator.sources.registries["consul"]
    streams = [k for k in registry.watchers if k.query.service == service]
    assert len(streams) == 1
    assert len(registry.watchers[streams[0]].subscribers) == 2
    rings.delete("first")
    wait_for(lambda: len(registry.watchers[streams[0]].subscribers) == 1, "one subscriber left")
    rings.delete("second")
    wait_for(lambda: not [k for k in registry.watchers if k.query.service == service],
             "the watcher to stop with its last ring")


def test_deleting_the_ring_removes_its_configmap(operator, rings, consul_helper):
    service = service_name()
    register(consul_helper, service, 2)
    rings.create("doomed", ring_spec(service))
    rings.wait_ring("doomed-ring", lambda r: len(r.assignment.members) == 2, "ring")
    rings.delete("doomed")

    def gone():
        try:
            rings.configmap("doomed-ring")
        except Exception as error:  # noqa: BLE001
            return getattr(error, "status", None) == 404
        return False
    wait_for(gone, "garbage collection of the ConfigMap", timeout=60)


def test_identities_with_unsafe_characters_get_safe_unique_keys(operator, rings, consul_helper):
    service = service_name()
    odd = ["node/a b", "node:a_b", "NODE@1", "ok-id"]
    for i, identity in enumerate(odd):
        consul_helper.register(service, f"{service}-{i}", port=9300 + i, meta={"name": identity})
    rings.create("odd", ring_spec(service, members={"identity": "meta:name"}))
    ring = rings.wait_ring("odd-ring", lambda r: len(r.assignment.members) == 4, "4 members")
    keys = ring.keys()
    assert sorted(keys) == sorted(odd)
    assert len(set(keys.values())) == 4 and keys["ok-id"] == "ok-id"
    data = rings.configmap("odd-ring").data
    for key in keys.values():
        assert all(c.isalnum() or c in "-._" for c in key)
        assert f"member.{key}" in data
    document = __import__("json").loads(data["ring.json"])
    assert {m["id"]: m["key"] for m in document["members"]} == keys


def evaluated(state, namespace: str, name: str, instances: set[str] | None = None):
    """The ring's worker, once a completed pass started on the Consul snapshot it holds now (of
    exactly ``instances``, if given): it has decided what the ring should be. Otherwise None."""
    current = state.workers.get((namespace, name))
    if current is None or current.subscription is None:
        return None
    snapshot = current.subscription.watch.state.snapshot
    if snapshot is None or instances is not None and \
            {i.name for i in snapshot.instances} != instances:
        return None
    return current if current.settled else None


def test_restarting_the_operator_moves_nothing_and_writes_nothing(
        crd, operator_env, rings, consul_helper):
    service = service_name()
    register(consul_helper, service, 4)
    with InProcessOperator() as first:
        rings.create("steady", ring_spec(service))
        before = rings.wait_ring("steady-ring", lambda r: len(r.assignment.members) == 4, "ring")
        wait_for(lambda: (rings.condition("steady", "Ready") or {}).get("status") == "True",
                 "Ready")
        wait_for(lambda: evaluated(first, rings.namespace, "steady"),
                 "the first operator to settle")
    configmap_version = rings.configmap("steady-ring").metadata.resource_version
    ring_version = rings.get("steady")["metadata"]["resourceVersion"]
    with InProcessOperator() as second:
        # Not just "nothing written yet": the restarted operator has read Consul, decided the
        # ring, and found the ConfigMap at this very resourceVersion to hold it already.
        resumed = wait_for(lambda: evaluated(second, rings.namespace, "steady"),
                           "the restarted operator to evaluate the ring on a Consul snapshot")
        assert len(resumed.subscription.watch.state.snapshot.instances) == 4
        assert resumed.memory.verified is not None
        assert (resumed.memory.verified.name, resumed.memory.verified.resource_version) == \
            ("steady-ring", configmap_version)
        assert resumed.writes == 0
        assert rings.configmap("steady-ring").metadata.resource_version == configmap_version
        assert rings.get("steady")["metadata"]["resourceVersion"] == ring_version
        after = rings.ring("steady-ring")
    assert after.assignment.moved_from(before.assignment) == 0
    assert ringfile.render(after) == ringfile.render(before)


def scrape() -> dict[str, float]:
    import os

    from controller.testing.scrape import scrape as scrape_url
    return scrape_url(f"http://127.0.0.1:{os.environ['SHARDRING_METRICS_PORT']}/metrics")


def operator_wide(metrics: dict[str, float]) -> dict[str, float]:
    """The series that count over every ring the operator serves (no ring label)."""
    return {k: v for k, v in metrics.items()
            if k.startswith(("shardring_rings{", "shardring_consul_queries_active",
                             "shardring_source_watchers_active"))}


def watchers(consul: int) -> dict[str, float]:
    """The watcher gauges with ``consul`` Consul watchers and none of the other sources."""
    return {"shardring_consul_queries_active": consul,  # deprecated, still served
            'shardring_source_watchers_active{source="consul"}': consul,
            'shardring_source_watchers_active{source="etcd"}': 0,
            'shardring_source_watchers_active{source="kubernetes"}': 0,
            'shardring_source_watchers_active{source="zookeeper"}': 0}


def test_metrics_move_with_the_ring(crd, operator_env, rings, consul_helper, namespace):
    # An operator for this namespace alone: the operator-wide gauges then count only this test's
    # ring, so they can be compared exactly before, during and after it.
    with InProcessOperator(namespaces=[namespace]):
        idle = operator_wide(scrape())
        assert idle == watchers(0)
        service = service_name()
        ids = register(consul_helper, service, 4)
        rings.create("measured", ring_spec(service))
        first = rings.wait_ring("measured-ring", lambda r: len(r.assignment.members) == 4,
                                "ring")
        label = f'{{namespace="{namespace}",ring="measured"}}'
        wait_for(lambda: scrape().get(f"shardring_ring_members{label}") == 4, "members gauge")
        ready = {**watchers(1),
                 'shardring_rings{condition="ConsulReachable",status="True"}': 1,
                 # No ring agent runs here: whether members applied it is not known.
                 'shardring_rings{condition="Converged",status="Unknown"}': 1,
                 'shardring_rings{condition="Degraded",status="False"}': 1,
                 'shardring_rings{condition="Ready",status="True"}': 1,
                 'shardring_rings{condition="Reconciling",status="False"}': 1,
                 'shardring_rings{condition="SourceReachable",status="True"}': 1,
                 'shardring_rings{condition="Stable",status="True"}': 1,
                 'shardring_rings{condition="Stalled",status="False"}': 1}
        wait_for(lambda: operator_wide(scrape()) == ready, "one ready ring in the gauges")
        # The same, ring by ring, with each condition's reason (what alerts select on).
        each = {frozenset(re.findall(r'(\w+)="([^"]*)"', k)): v for k, v in scrape().items()
                if k.startswith("shardring_ring_condition{")}
        assert each[frozenset({("namespace", namespace), ("ring", "measured"),
                               ("condition", "Ready"), ("status", "True"),
                               ("reason", "Published")})] == 1, each
        assert len(each) == sum(v for k, v in ready.items() if k.startswith("shardring_rings"))
        before = scrape()
        consul_helper.set_health(ids[0], passing=False)
        ring = rings.wait_ring("measured-ring", lambda r: len(r.assignment.members) == 3,
                               "3 members")
        after = wait_for(lambda: (lambda m: m if m.get(f"shardring_ring_members{label}") == 3
                                  else None)(scrape()), "the gauge to follow")
        assert after[f"shardring_reshards_total{label}"] == \
            before[f"shardring_reshards_total{label}"] + 1
        moved = after[f"shardring_shards_moved_total{label}"] - \
            before[f"shardring_shards_moved_total{label}"]
        assert moved == ring.assignment.moved_from(first.assignment) > 0
        assert after["shardring_publish_latency_seconds_count"] > \
            before["shardring_publish_latency_seconds_count"]
        assert after[f"shardring_configmap_writes_total{label}"] == \
            before[f"shardring_configmap_writes_total{label}"] + 1
        assert after[f"shardring_ring_version{label}"] == ring.version
        changes = f'shardring_source_membership_changes_total{{connection="default",' \
            f'query="{service}",source="consul"}}'
        assert after[changes] > before[changes]
        deprecated = f'shardring_consul_membership_changes_total{{connection="default",' \
            f'service="{service}"}}'
        assert after[deprecated] - before[deprecated] == after[changes] - before[changes]
        assert after['shardring_source_reply_bytes_count{source="consul"}'] > \
            before['shardring_source_reply_bytes_count{source="consul"}']
        wait_for(lambda: operator_wide(scrape()) == ready, "still one ready ring")
        # The ring goes: so do its query, its conditions and its per-ring gauges.
        rings.delete("measured")
        gone = wait_for(lambda: (lambda m: m if operator_wide(m) == idle else None)(scrape()),
                        "the operator-wide gauges back to where they started")
        assert f"shardring_ring_members{label}" not in gone
        assert f"shardring_ring_version{label}" not in gone


def test_ring_show_reads_a_live_configmap(operator, rings, consul_helper, namespace,
                                          control_plane):
    import os
    import subprocess
    import sys
    service = service_name()
    register(consul_helper, service, 2)
    rings.create("live", ring_spec(service))
    rings.wait_ring("live-ring", lambda r: len(r.assignment.members) == 2, "ring")
    result = subprocess.run([sys.executable, "-m", "controller", "ring", "show", "--configmap",
                             f"{namespace}/live-ring"], capture_output=True, text=True,
                            env={**os.environ, "KUBECONFIG": str(control_plane.kubeconfig)})
    assert result.returncode == 0, result.stderr
    assert "2 members, 64 shards" in result.stdout and f"{service}-0" in result.stdout


def test_rapid_changes_always_end_in_the_final_membership(operator, rings, consul_helper,
                                                          namespace):
    """Consul changes landing while a pass is running are never lost (no stale rings)."""
    import random
    service = service_name()
    ids = register(consul_helper, service, 12)
    rings.create("rapid", ring_spec(service, members={"identity": "id"}, stabilization={
        "window": "0s", "maxDelay": "0s", "maxMemberLossPercent": 100}))
    rings.wait_ring("rapid-ring", lambda r: len(r.assignment.members) == 12, "12 members")
    rnd = random.Random(3)
    healthy = set(ids)
    states = [frozenset(healthy)]
    for _ in range(40):
        instance = rnd.choice(ids)
        passing = instance not in healthy
        consul_helper.set_health(instance, passing=passing)
        (healthy.add if passing else healthy.discard)(instance)
        states.append(frozenset(healthy))
        time.sleep(rnd.choice([0, 0.005, 0.02]))
    if len(healthy) < 1:
        consul_helper.set_health(ids[0], passing=True)
        healthy.add(ids[0])
        states.append(frozenset(healthy))
    # With this seed no earlier membership equals the final one: a ring with the final membership
    # can only come from Consul's final state, and any ring written after it is a stale one.
    assert states[-1] not in states[:-1]
    final = rings.wait_ring("rapid-ring", lambda r: {m.id for m in r.assignment.members} ==
                            healthy, "the final membership", timeout=15)
    configmap_version = rings.configmap("rapid-ring").metadata.resource_version
    settled = wait_for(lambda: evaluated(operator, namespace, "rapid", healthy),
                       "the operator to settle on Consul's final state")
    writes = settled.writes
    time.sleep(2)  # anything still in flight would land now
    assert evaluated(operator, namespace, "rapid", healthy) is settled
    assert settled.writes == writes
    assert rings.configmap("rapid-ring").metadata.resource_version == configmap_version
    assert rings.ring("rapid-ring").hash == final.hash
    wait_for(lambda: rings.get("rapid")["status"].get("ringVersion") == final.version,
             "the status to name the final ring")
