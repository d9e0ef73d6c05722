"""Members from a real etcd server used as a registry, registered as the design notes do (a lease
per instance, a key under the service prefix bound to it): lease loss, bad values, a restarted
server, a compacted revision."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
import uuid

import pytest

from controller.testing.etcd_registry import EtcdRegistryServer, Registrar
from tests.operator_helpers import wait_for

pytestmark = pytest.mark.controlplane


@pytest.fixture(scope="module")
def etcd_server(control_plane, tmp_path_factory):
    server = EtcdRegistryServer(control_plane.assets, tmp_path_factory.mktemp("etcd-registry"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def registrar(etcd_server):
    made = Registrar(etcd_server, f"/services/web-{uuid.uuid4().hex[:6]}/")
    yield made
    made.cleanup()


@pytest.fixture
def etcd_operator(crd, operator_env, control_plane, etcd_server):
    from controller.operator.settings import OperatorConfig
    from controller.sources.connections import ConsulConnection, EtcdConnection
    from tests.inprocess import InProcessOperator
    config = OperatorConfig(
        connections={"default": ConsulConnection.from_address("default",
                                                              control_plane.consul_addr)},
        etcd={"default": EtcdConnection("default", (etcd_server.url,))})
    with InProcessOperator(config=config) as memo:
        yield memo


def etcd_ring(prefix: str, **extra) -> dict:
    return {"etcd": {"prefix": prefix}, "shards": 64,
            "stabilization": {"window": "0s", "maxDelay": "0s"}, **extra}


def source_sample(name: str, prefix: str) -> float:
    from controller import metrics
    return metrics.REGISTRY.get_sample_value(
        name, {"source": "etcd", "connection": "default", "query": prefix}) or 0.0


def owners(ring) -> dict[int, tuple[str, ...]]:
    return dict(enumerate(ring.assignment.owners))


def test_lease_registered_members_form_the_ring_and_a_lost_lease_moves_only_its_shards(
        etcd_operator, rings, registrar):
    registrar.register("web-0", "10.0.0.10:9100")  # the notes' plain host:port
    registrar.register("web-1", "10.0.0.11:9100")
    registrar.register("web-2", json.dumps({"address": "10.0.0.12", "port": 9100, "zone": "b",
                                            "metadata": {"rack": "r2"}}))
    registrar.register("web-3", json.dumps({"address": "10.0.0.13:9100", "weight": 2}))
    rings.create("fleet", etcd_ring(registrar.prefix, members={"zoneFrom": "node-meta:zone"}))
    before = wait_for(lambda: (r := rings.ring("fleet-ring")) and
                      len(r.assignment.members) == 4 and r, "four members published")
    assert before.endpoints["web-2"].address == "10.0.0.12"
    assert before.endpoints["web-3"].port == 9100
    assert before.service == {"source": "etcd", "connection": "default",
                              "prefix": registrar.prefix, "identity": "node/id",
                              "zoneFrom": "node-meta:zone"}
    wait_for(lambda: (rings.condition("fleet", "SourceReachable") or {}).get("status") == "True",
             "SourceReachable=True (the status may follow the ConfigMap)")

    changes = source_sample("shardring_source_membership_changes_total", registrar.prefix)
    registrar.revoke("web-2")  # its lease ends: etcd deletes the key
    after = wait_for(lambda: (r := rings.ring("fleet-ring")) and
                     len(r.assignment.members) == 3 and r, "web-2 gone")
    assert after.version == before.version + 1
    # The same source metrics as every other source, labelled with its kind.
    assert source_sample("shardring_source_membership_changes_total", registrar.prefix) > changes
    from controller import metrics
    assert metrics.REGISTRY.get_sample_value("shardring_source_reply_bytes_count",
                                             {"source": "etcd"}) > 0
    moved = [s for s, held in owners(before).items() if owners(after)[s] != held]
    assert moved and all("web-2" in owners(before)[s] for s in moved)


def test_bad_values_degrade_naming_the_key_and_keep_the_last_ring(
        etcd_operator, rings, registrar, core_v1, namespace):
    registrar.register("a", "10.0.0.1:9100")
    registrar.register("b", "10.0.0.2:9100")
    rings.create("strict", etcd_ring(registrar.prefix))
    wait_for(lambda: len(rings.ring("strict-ring").assignment.members) == 2, "published")
    kept = core_v1.read_namespaced_config_map("strict-ring", namespace).metadata.resource_version

    def degraded_by(key: str, why: str) -> None:
        wait_for(lambda: (c := rings.condition("strict", "Degraded")) and
                 c["status"] == "True" and c["reason"] == "InvalidMembership" and
                 f"etcd key '{registrar.prefix}{key}'" in c["message"] and why in c["message"],
                 f"Degraded naming {key}: {why}")
    registrar.register("broken", "{not json")
    degraded_by("broken", "not valid JSON")
    registrar.put("broken", json.dumps({"port": 9100}))
    degraded_by("broken", 'no "address"')
    registrar.put("broken", "no-port-here")
    degraded_by("broken", "neither JSON nor host:port")
    # Nested too deep for the JSON parser (RecursionError, not ValueError): still that key's.
    registrar.put("broken", "[" * 5000 + "]" * 5000)
    degraded_by("broken", "cannot be read (RecursionError)")
    registrar.put("broken", "10.0.0.3:70000")  # (was published, a port no reader takes)
    degraded_by("broken", "port '70000' is not a port number")
    assert (rings.condition("strict", "SourceReachable") or {}).get("status") == "True"
    assert core_v1.read_namespaced_config_map("strict-ring", namespace).metadata \
        .resource_version == kept

    registrar.put("broken", "10.0.0.3:9100")  # fixed: it joins
    wait_for(lambda: len(rings.ring("strict-ring").assignment.members) == 3, "recovered")

    # Two keys whose values give the same identity (here, by address): both keys are named.
    rings.create("by-address", etcd_ring(registrar.prefix, members={"identity": "address"}))
    wait_for(lambda: len(rings.ring("by-address-ring").assignment.members) == 3, "published")
    kept = core_v1.read_namespaced_config_map("by-address-ring", namespace).metadata \
        .resource_version
    registrar.register("twin", "10.0.0.1:9100")
    wait_for(lambda: (c := rings.condition("by-address", "Degraded")) and
             c["status"] == "True" and c["reason"] == "InvalidMembership" and
             "share identity '10.0.0.1'" in c["message"] and
             f"{registrar.prefix}a" in c["message"] and f"{registrar.prefix}twin" in c["message"],
             "Degraded naming both keys")
    assert core_v1.read_namespaced_config_map("by-address-ring", namespace).metadata \
        .resource_version == kept


def test_a_restarted_server_resumes_the_watch_without_a_write(
        etcd_operator, rings, registrar, etcd_server, core_v1, namespace, caplog):
    caplog.set_level(logging.INFO)
    for n in range(3):
        registrar.register(f"m{n}", f"10.0.1.{n}:9100")
    rings.create("steady", etcd_ring(registrar.prefix))
    published = wait_for(lambda: (r := rings.ring("steady-ring")) and
                         len(r.assignment.members) == 3 and r, "published")
    kept = core_v1.read_namespaced_config_map("steady-ring", namespace).metadata.resource_version
    watcher = next(w for w in etcd_operator.sources.registries["etcd"].watchers.values()
                   if w.key.query.prefix == registrar.prefix)
    lists = watcher.lists
    etcd_server.stop(signal.SIGKILL)
    wait_for(lambda: (rings.condition("steady", "SourceReachable") or {}).get("status") ==
             "False", "the outage reported", timeout=10)
    time.sleep(2)  # (its retries meanwhile fail each its own way: refused, reset, timed out)
    etcd_server.start()  # same data: the keys and their leases are still there
    wait_for(lambda: watcher.lists > lists and watcher.state.error is None,
             "listed again after the restart", timeout=30)
    # One line as it goes (a broken watch, then refused connections, said two before), one as
    # it comes back (none before).
    ours = [r.getMessage() for r in caplog.records if registrar.prefix in r.getMessage()]
    assert sum("cannot be reached" in m for m in ours) == 1, ours
    assert sum("reachable again" in m for m in ours) == 1, ours
    registrar.keep_alive()
    assert core_v1.read_namespaced_config_map("steady-ring", namespace).metadata \
        .resource_version == kept
    assert rings.ring("steady-ring").version == published.version
    registrar.register("m3", "10.0.1.3:9100")  # and it still follows
    wait_for(lambda: len(rings.ring("steady-ring").assignment.members) == 4, "followed")


def test_a_watch_from_a_compacted_revision_lists_again(etcd_server, registrar, caplog):
    from controller.sources.connections import EtcdConnection
    from controller.sources.etcd.query import EtcdQuery
    from controller.sources.etcd.watch import EtcdRegistry

    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        registrar.register("x", "10.0.2.1:9100")
        stale = int(etcd_server.call("/v3/kv/range", {"key": "Lw=="})["header"]["revision"])
        registrar.register("y", "10.0.2.1:9101")
        registrar.put("y", "10.0.2.2:9100")
        etcd_server.compact()  # the history since the stale revision is gone
        registry = EtcdRegistry({"default": EtcdConnection("default", (etcd_server.url,))})

        woke = asyncio.Event()
        subscription = registry.subscribe(EtcdQuery("default", registrar.prefix), None, woke.set)
        watcher = subscription.watch
        # The first listing is made to report the stale revision, as if the history had been
        # compacted between the listing and the watch: the watch is refused, the watcher lists
        # again and ends with the truth.
        gateway = registry.gateways["default"]
        gateway_list = gateway.list_prefix

        async def stale_once(prefix, token):
            gateway.list_prefix = gateway_list
            revision, keys = await gateway_list(prefix, token)
            return stale, {k: v for k, v in keys.items() if not k.endswith("/y")}
        gateway.list_prefix = stale_once
        for _ in range(100):
            if watcher.lists >= 2 and watcher.state.snapshot and \
                    len(watcher.state.snapshot.instances) == 2:
                break
            await asyncio.sleep(0.05)
        try:
            assert watcher.lists >= 2, "the refused watch made the watcher list again"
            assert {i.name for i in watcher.state.snapshot.instances} == {"x", "y"}
            said = [r for r in caplog.records if "compacted" in r.getMessage()]
            assert len(said) == 1 and said[0].levelname == "INFO"  # said once, not silently
            assert registrar.prefix in said[0].getMessage()
        finally:
            await registry.close()
    asyncio.run(scenario())


# ---- TLS with a client certificate, and etcd's own authentication -------------------------------

READER, READER_PASSWORD = "ring-reader", "s3cret-reader-pw"


@pytest.fixture(scope="module")
def secure_etcd(control_plane, tmp_path_factory):
    server = EtcdRegistryServer(control_plane.assets, tmp_path_factory.mktemp("etcd-tls"),
                                tls=True)
    server.start()
    server.enable_auth(READER, READER_PASSWORD, "/secure/")
    yield server
    server.stop()


def test_tls_client_certificates_and_credentials_from_a_marked_secret(
        crd, operator_env, control_plane, secure_etcd, rings, core_v1, namespace, caplog):
    from kubernetes import client as k8s

    from controller.operator.settings import OperatorConfig
    from controller.sources.connections import ConsulConnection, EtcdConnection
    from tests.inprocess import InProcessOperator
    registrar = Registrar(secure_etcd, f"/secure/web-{uuid.uuid4().hex[:6]}/")
    registrar.register("a", "10.0.3.1:9100")
    registrar.register("b", "10.0.3.2:9100")
    tls = EtcdConnection("default", (secure_etcd.url,), str(secure_etcd.ca_file),
                         str(secure_etcd.client_cert), str(secure_etcd.client_key))
    no_client_cert = EtcdConnection("nocert", (secure_etcd.url,), str(secure_etcd.ca_file))
    config = OperatorConfig(
        connections={"default": ConsulConnection.from_address("default",
                                                              control_plane.consul_addr)},
        etcd={"default": tls, "nocert": no_client_cert})
    core_v1.create_namespaced_secret(namespace, k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name="etcd-auth",
                                  labels={"shardring.io/source-credentials": "true"}),
        string_data={"username": READER, "password": "wrong-password"}))
    secured = {"prefix": registrar.prefix, "credentialsSecretRef": {"name": "etcd-auth"}}
    try:
        with InProcessOperator(config=config):
            rings.create("secure", etcd_ring(registrar.prefix, etcd=secured))
            rings.create("nocert", etcd_ring(registrar.prefix,
                                             etcd={**secured, "connection": "nocert"}))
            refused = wait_for(lambda: (c := rings.condition("secure", "SourceReachable")) and
                               c["status"] == "False" and c, "wrong password refused")
            assert refused["reason"] == "PermissionDenied"
            unreachable = wait_for(lambda: (c := rings.condition("nocert", "SourceReachable"))
                                   and c["status"] == "False" and c, "no client certificate")
            assert unreachable["reason"] == "QueryFailed"
            # The right password, put into the marked Secret: used within seconds.
            core_v1.patch_namespaced_secret("etcd-auth", namespace,
                                            {"stringData": {"password": READER_PASSWORD}})
            ring = wait_for(lambda: (r := rings.ring("secure-ring")) and
                            len(r.assignment.members) == 2 and r, "published over TLS", 15)
            assert set(ring.assignment.ids) == {"a", "b"}
            registrar.revoke("a")
            wait_for(lambda: len(rings.ring("secure-ring").assignment.members) == 1, "followed")
    finally:
        registrar.cleanup()
    seen = str(rings.get("secure")) + str(rings.get("nocert")) + caplog.text + str(
        [e.message for e in core_v1.list_namespaced_event(namespace).items])
    assert READER_PASSWORD not in seen and "wrong-password" not in seen


def test_a_member_marking_itself_draining_in_its_value_gives_up_its_shards(
        etcd_operator, rings, registrar):
    for name in ("p", "q", "r"):
        registrar.register(name, json.dumps({"address": f"10.0.7.{ord(name)}:9100"}))
    rings.create("etcd-drain", etcd_ring(registrar.prefix,
                                         members={"drainFrom": "field:draining"}))
    wait_for(lambda: len(rings.ring("etcd-drain-ring").assignment.members) == 3, "published")
    registrar.put("q", json.dumps({"address": "10.0.7.113:9100", "draining": True}))
    drained = wait_for(lambda: (r := rings.ring("etcd-drain-ring")) and r.draining and r,
                       "q draining")
    assert drained.draining == ("q",) and set(drained.assignment.ids) == {"p", "r"}
    registrar.revoke("q")
    gone = wait_for(lambda: (r := rings.ring("etcd-drain-ring")) and not r.draining and r,
                    "q gone")
    assert gone.assignment.owners == drained.assignment.owners


def test_a_server_restored_to_an_earlier_revision_is_the_new_truth_without_a_reshard(
        etcd_operator, rings, etcd_server, core_v1, namespace):
    import shutil
    prefix = f"/services/restore-{uuid.uuid4().hex[:6]}/"
    first = Registrar(etcd_server, prefix)
    for n in range(3):
        first.register(f"m{n}", f"10.0.8.{n}:9100")
    # The instances re-register one by one after the restore: the window (what it is for)
    # keeps those passing states from being published.
    rings.create("restored", {**etcd_ring(prefix),
                              "stabilization": {"window": "3s", "maxDelay": "10s"}})
    published = wait_for(lambda: (r := rings.ring("restored-ring")) and
                         len(r.assignment.members) == 3 and r, "published")
    watcher = next(w for w in etcd_operator.sources.registries["etcd"].watchers.values()
                   if w.key.query.prefix == prefix)
    for _ in range(10):  # history moves on (the same value again: no membership change)
        first.put("m0", "10.0.8.0:9100")
    wait_for(lambda: watcher._revision >= 10, "the watcher at the newer revision")
    revision_before, lists = watcher._revision, watcher.lists
    # As after a restore: the server comes back with an older (here: fresh) history, and the
    # instances register again with new leases.
    etcd_server.stop()
    shutil.rmtree(etcd_server.workdir / "data")
    etcd_server.start()
    again = Registrar(etcd_server, prefix)
    try:
        for n in range(3):
            again.register(f"m{n}", f"10.0.8.{n}:9100")
        # (A listing that finds the same members keeps the snapshot: nothing to publish.)
        wait_for(lambda: watcher.lists > lists and watcher.state.error is None and
                 watcher._revision < revision_before and
                 len(watcher.state.snapshot.instances) == 3, "re-listed at the lower revision")
        time.sleep(4)  # past the window
        assert rings.ring("restored-ring").version == published.version  # no spurious reshard
        again.register("m3", "10.0.8.3:9100")  # and it follows from the new history
        wait_for(lambda: len(rings.ring("restored-ring").assignment.members) == 4, "followed")
    finally:
        again.cleanup()
