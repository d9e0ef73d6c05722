"""Members from a real Apache ZooKeeper server, registered as the design notes do (an ephemeral
node per instance under the service path, JSON data with a "frontend" address): a session that
ends, bad data, a restarted server."""

from __future__ import annotations

import json
import uuid

import pytest

from controller.testing.zookeeper import Registrar, ZooKeeperServer
from tests.operator_helpers import wait_for

pytestmark = pytest.mark.controlplane


@pytest.fixture(scope="module")
def zookeeper(tmp_path_factory):
    server = ZooKeeperServer(tmp_path_factory.mktemp("zookeeper"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def registrar(zookeeper):
    made = Registrar(zookeeper, f"/services/web-{uuid.uuid4().hex[:6]}")
    yield made
    made.cleanup()


@pytest.fixture
def zk_operator(crd, operator_env, control_plane, zookeeper):
    from controller.operator.settings import OperatorConfig
    from controller.sources.connections import ConsulConnection, ZooKeeperConnection
    from tests.inprocess import InProcessOperator
    config = OperatorConfig(
        connections={"default": ConsulConnection.from_address("default",
                                                              control_plane.consul_addr)},
        zookeeper={"default": ZooKeeperConnection("default", (zookeeper.hosts,))})
    with InProcessOperator(config=config) as memo:
        yield memo


def zk_ring(path: str, **zookeeper) -> dict:
    return {"zookeeper": {"path": path, **zookeeper}, "shards": 64,
            "stabilization": {"window": "0s", "maxDelay": "0s"}}


def frontend(address: str) -> str:
    return json.dumps({"frontend": address})  # the notes' registration data


def test_ephemeral_nodes_form_the_ring_and_an_ended_session_moves_only_its_shards(
        zk_operator, rings, registrar):
    for n in range(4):
        registrar.register(f"worker-{n}", frontend(f"10.0.4.{n}:8080"))
    rings.create("zk", zk_ring(registrar.path, addressField="frontend"))
    before = wait_for(lambda: (r := rings.ring("zk-ring")) and
                      len(r.assignment.members) == 4 and r, "four members published")
    assert before.endpoints["worker-2"].address == "10.0.4.2"
    assert before.endpoints["worker-2"].port == 8080
    assert before.service["source"] == "zookeeper" and before.service["path"] == registrar.path
    wait_for(lambda: (rings.condition("zk", "SourceReachable") or {}).get("status") == "True",
             "SourceReachable=True")

    registrar.end_session("worker-1")  # the instance stopped: its ephemeral node goes
    after = wait_for(lambda: (r := rings.ring("zk-ring")) and
                     len(r.assignment.members) == 3 and r, "worker-1 gone", timeout=10)
    assert after.version == before.version + 1
    old, new = dict(enumerate(before.assignment.owners)), dict(enumerate(after.assignment.owners))
    moved = [s for s in old if old[s] != new[s]]
    assert moved and all("worker-1" in old[s] for s in moved)


def test_bad_data_degrades_naming_the_node_and_a_fix_recovers(
        zk_operator, rings, registrar, core_v1, namespace):
    registrar.register("a", frontend("10.0.5.1:8080"))
    registrar.register("b", frontend("10.0.5.2:8080"))
    rings.create("zkbad", zk_ring(registrar.path, addressField="frontend"))
    wait_for(lambda: len(rings.ring("zkbad-ring").assignment.members) == 2, "published")
    kept = core_v1.read_namespaced_config_map("zkbad-ring", namespace).metadata.resource_version
    registrar.register("c", json.dumps({"address": "10.0.5.3:8080"}))  # not the field we read
    wait_for(lambda: (c := rings.condition("zkbad", "Degraded")) and c["status"] == "True" and
             f"ZooKeeper node '{registrar.path}/c'" in c["message"] and
             'no "frontend"' in c["message"], "Degraded naming the node")
    assert core_v1.read_namespaced_config_map("zkbad-ring", namespace).metadata \
        .resource_version == kept
    # A value nested too deep for the JSON parser: that node's problem, not the ensemble's.
    registrar.set("c", '{"frontend": ' + "[" * 5000 + "]" * 5000 + "}")
    wait_for(lambda: (c := rings.condition("zkbad", "Degraded")) and c["status"] == "True" and
             f"ZooKeeper node '{registrar.path}/c'" in c["message"] and
             "cannot be read" in c["message"], "Degraded naming the deep node")
    assert (rings.condition("zkbad", "SourceReachable") or {}).get("status") == "True"
    registrar.set("c", frontend("10.0.5.3:8080"))  # a data change is seen too
    wait_for(lambda: len(rings.ring("zkbad-ring").assignment.members) == 3, "recovered",
             timeout=10)  # a data watch, not the 30 s re-read


def test_a_restarted_server_resumes_without_a_write(
        zk_operator, rings, registrar, zookeeper, core_v1, namespace):
    for n in range(3):
        registrar.register(f"s{n}", f"10.0.6.{n}:9100")  # plain host:port works too
    rings.create("zksteady", zk_ring(registrar.path))
    published = wait_for(lambda: (r := rings.ring("zksteady-ring")) and
                         len(r.assignment.members) == 3 and r, "published")
    kept = core_v1.read_namespaced_config_map("zksteady-ring", namespace).metadata \
        .resource_version
    watcher = next(w for w in zk_operator.sources.registries["zookeeper"].watchers.values()
                   if w.key.query.path == registrar.path)
    reads = watcher.reads
    zookeeper.restart()  # the sessions outlive a quick restart: the ephemeral nodes stay
    registrar.register("s3", "10.0.6.3:9100")  # a change after the restart is followed
    wait_for(lambda: len(rings.ring("zksteady-ring").assignment.members) == 4, "followed",
             timeout=30)
    assert watcher.reads > reads
    assert rings.ring("zksteady-ring").version == published.version + 1  # one change, one write
    assert core_v1.read_namespaced_config_map("zksteady-ring", namespace).metadata \
        .resource_version != kept


def test_an_outage_is_said_once_within_seconds_and_its_end_followed_at_once(
        zk_operator, rings, registrar, zookeeper, caplog, report):
    import logging
    import time
    caplog.set_level(logging.INFO)
    registrar.register("o1", "10.0.7.1:9100")
    rings.create("zkout", zk_ring(registrar.path))
    wait_for(lambda: len(rings.ring("zkout-ring").assignment.members) == 1, "published")

    def reachable() -> str:
        return (rings.condition("zkout", "SourceReachable") or {}).get("status", "")
    down = time.monotonic()
    zookeeper.stop()
    # Seen when the connection drops, not at the next 30 s re-read.
    wait_for(lambda: reachable() == "False", "the outage reported", timeout=10)
    noticed = time.monotonic() - down
    # Down long enough that aiozk's own reconnect backoff (1, 2, 4, 8 s...) would wait 5 s.
    time.sleep(max(0.0, 10 - noticed))
    up = time.monotonic()
    zookeeper.start()
    wait_for(lambda: reachable() == "True", "followed again", timeout=8, interval=0.05)
    back = time.monotonic() - up
    report(f"zookeeper outage: reported after {noticed:.2f} s, followed {back:.2f} s after "
           f"the server returned")
    ours = [r.getMessage() for r in caplog.records if registrar.path in r.getMessage()]
    assert sum("cannot be reached" in m for m in ours) == 1, ours
    from controller import metrics
    assert (metrics.REGISTRY.get_sample_value(
        "shardring_source_errors_total",
        {"source": "zookeeper", "connection": "default", "query": registrar.path,
         "reason": "unreachable"}) or 0) >= 1
    assert sum("reachable again" in m for m in ours) == 1, ours
    client = [r for r in caplog.records if r.name.startswith("aiozk")]
    assert not [r for r in client if r.exc_info or r.exc_text], "a traceback from aiozk"
    loud = [r.getMessage() for r in client if r.levelno >= logging.WARNING]
    assert len(loud) <= 2, loud  # not one per attempt to reconnect


def test_an_expired_session_is_replaced_and_everything_read_again(
        zk_operator, rings, zookeeper):
    import shutil
    import time
    path = f"/services/expiry-{uuid.uuid4().hex[:6]}"
    first = Registrar(zookeeper, path)
    for n in range(3):
        first.register(f"e{n}", f"10.0.9.{n}:9100")
    # The instances re-register one by one: the window keeps those passing states unpublished.
    rings.create("expiring", {**zk_ring(path),
                              "stabilization": {"window": "3s", "maxDelay": "10s"}})
    published = wait_for(lambda: (r := rings.ring("expiring-ring")) and
                         len(r.assignment.members) == 3 and r, "published")
    # A server that comes back without its state: every session, the operator's too, expired.
    zookeeper.stop()
    shutil.rmtree(zookeeper.workdir / "data")
    zookeeper.start()
    again = Registrar(zookeeper, path)
    try:
        for n in range(3):
            again.register(f"e{n}", f"10.0.9.{n}:9100")
        again.register("e3", "10.0.9.3:9100")
        wait_for(lambda: len(rings.ring("expiring-ring").assignment.members) == 4,
                 "followed on a new session", timeout=60)
        time.sleep(1)
        assert rings.ring("expiring-ring").version == published.version + 1
    finally:
        again.cleanup()
        first.cleanup()


def test_digest_authentication_from_a_marked_secret(zk_operator, rings, zookeeper, core_v1,
                                                    namespace, caplog):
    from kubernetes import client as k8s

    from controller.core.credentials import UserPassword, digest
    path = f"/services/private-{uuid.uuid4().hex[:6]}"
    private = Registrar(zookeeper, path)
    readers = ("ring-reader", "zk-reader-s3cret")
    try:
        for n in range(2):
            private.register(f"p{n}", f"10.0.10.{n}:9100", readers=readers)
        core_v1.create_namespaced_secret(namespace, k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name="zk-auth",
                                      labels={"shardring.io/source-credentials": "true"}),
            string_data={"username": readers[0], "password": "wrong"}))
        rings.create("private", zk_ring(path, credentialsSecretRef={"name": "zk-auth"}))
        refused = wait_for(lambda: (c := rings.condition("private", "SourceReachable")) and
                           c["status"] == "False" and c, "wrong password refused")
        assert refused["reason"] == "PermissionDenied"
        core_v1.patch_namespaced_secret("zk-auth", namespace,
                                        {"stringData": {"password": readers[1]}})
        wait_for(lambda: (r := rings.ring("private-ring")) and len(r.assignment.members) == 2,
                 "published with the right password", timeout=15)
        # The session of the rotated-out password is closed, not kept until the operator exits.
        sessions = zk_operator.sources.registries["zookeeper"].ensembles
        wrong = digest(UserPassword(readers[0], "wrong"))
        wait_for(lambda: not any(name.endswith(wrong) for name in sessions), "old session closed")
        assert any(name.endswith(digest(UserPassword(*readers))) for name in sessions)
    finally:
        private.cleanup()
    seen = str(rings.get("private")) + caplog.text
    assert readers[1] not in seen and "wrong" not in str(rings.get("private").get("status"))
