"""One tenant's ring cannot borrow another's Secrets or learn about them, learn the operator's
other connections, or break on a long name; a deleted ring's metric series go with it. On the
real API server and Consul agent."""

from __future__ import annotations

import os
import time

import pytest
from kubernetes import client as k8s

from controller.core.credentials import Token
from controller.testing.scrape import scrape
from tests.operator_helpers import Rings, quick, service_name, wait_for

pytestmark = pytest.mark.controlplane


def degraded(rings: Rings, name: str, reason: str) -> dict:
    return wait_for(lambda: (c := rings.condition(name, "Degraded")) and c["status"] == "True"
                    and c["reason"] == reason and c, f"{name}: Degraded {reason}")


def test_only_a_secret_marked_for_it_serves_as_a_token_and_nothing_leaks(
        operator, rings, core_v1, consul_helper, namespace):
    service = service_name()
    for n in range(2):
        consul_helper.register(service, f"{service}-{n}", port=9500 + n)
    # Someone else's Secret in the same namespace, never meant as a token.
    core_v1.create_namespaced_secret(namespace, k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name="db-password"), string_data={"token": "hunter2"}))
    rings.create("borrower", quick(service, consul={"tokenSecretRef": {"name": "db-password"}}))
    rings.create("guesser", quick(service, consul={"tokenSecretRef": {"name": "no-such"}}))
    borrowed, guessed = degraded(rings, "borrower", "SecretMissing"), \
        degraded(rings, "guesser", "SecretMissing")
    assert "shardring.io/source-credentials=true" in borrowed["message"]
    # An existing unmarked Secret and a missing one read exactly alike: nothing to probe with.
    assert borrowed["message"].replace("db-password", "X") == \
        guessed["message"].replace("no-such", "X")
    assert not [c for c in core_v1.list_namespaced_config_map(namespace).items
                if c.metadata.name in ("borrower-ring", "guesser-ring")]
    assert "hunter2" not in str(rings.get("borrower"))

    # Marked by whoever owns it, the same Secret serves (the dev agent accepts any token).
    core_v1.patch_namespaced_secret("db-password", namespace, {
        "metadata": {"labels": {"shardring.io/source-credentials": "true"}}})
    wait_for(lambda: (rings.condition("borrower", "Ready") or {}).get("status") == "True",
             "the marked Secret accepted at once (its watch event wakes the ring)", timeout=5)

    # A rotated token is used within seconds: the ring's query moves to the new token.
    worker = operator.workers[(namespace, "borrower")]
    assert worker.subscription.watch.key.token_digest == Token("hunter2").digest()
    reads = operator.kube.secret_reads
    core_v1.patch_namespaced_secret("db-password", namespace, {"stringData": {"token": "rotated"}})
    wait_for(lambda: worker.subscription and
             worker.subscription.watch.key.token_digest == Token("rotated").digest(),
             "the rotated token in use", timeout=5)
    # Passes take the token from the Secret's watch events: no GET of it per pass.
    consul_helper.register(service, f"{service}-2", port=9502)
    wait_for(lambda: len(rings.ring("borrower-ring").assignment.members) == 3, "a pass or two")
    assert operator.kube.secret_reads == reads


def test_a_secret_marked_with_the_older_label_still_serves(operator, rings, core_v1,
                                                          consul_helper, namespace):
    service = service_name()
    for n in range(2):
        consul_helper.register(service, f"{service}-{n}", port=9700 + n)
    core_v1.create_namespaced_secret(namespace, k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name="legacy", labels={"shardring.io/consul-token": "true"}),
        string_data={"token": "old-style"}))
    rings.create("legacy", quick(service, consul={"tokenSecretRef": {"name": "legacy"}}))
    wait_for(lambda: (rings.condition("legacy", "Ready") or {}).get("status") == "True",
             "served with the older label")
    # Not watched under that label: a rotation is used at the ring's next pass.
    worker = operator.workers[(namespace, "legacy")]
    core_v1.patch_namespaced_secret("legacy", namespace, {"stringData": {"token": "rotated"}})
    consul_helper.register(service, f"{service}-2", port=9702)
    wait_for(lambda: worker.subscription and
             worker.subscription.watch.key.token_digest == Token("rotated").digest(),
             "the rotated token in use after the next pass")


def test_an_unknown_connection_does_not_list_the_others(operator, rings):
    rings.create("stray", quick(service_name(), consul={"connection": "finance-dc"}))
    message = degraded(rings, "stray", "UnknownConnection")["message"]
    assert "'finance-dc'" in message and "default" not in message


def test_a_name_too_long_for_a_label_value_is_refused_at_apply(rings):
    with pytest.raises(k8s.ApiException) as refused:
        rings.create("r" * 64, quick(service_name()))
    assert refused.value.status == 422 and "at most 63 characters" in refused.value.body
    rings.create("r" * 63, quick(service_name()))  # the longest name that works


def test_a_deleted_rings_series_go_with_it(operator, rings, consul_helper, namespace):
    service = service_name()
    ids = [consul_helper.register(service, f"{service}-{n}", port=9600 + n) for n in range(3)]
    rings.create("counted", quick(service))
    wait_for(lambda: rings.ring("counted-ring"), "published")
    consul_helper.set_health(ids[0], passing=False)
    wait_for(lambda: len(rings.ring("counted-ring").assignment.members) == 2, "resharded")
    url = f"http://127.0.0.1:{os.environ['SHARDRING_METRICS_PORT']}/metrics"
    ring_label = f'namespace="{namespace}",ring="counted"'
    query_labels = (f'service="{service}"', f'query="{service}"')

    def series() -> list[str]:
        return [k for k in scrape(url) if ring_label in k or any(q in k for q in query_labels)]
    present = wait_for(lambda: (found := series()) and
                       any(k.startswith("shardring_reshards_total") for k in found) and found,
                       "the ring's series")
    assert any(k.startswith("shardring_consul_membership_changes_total") for k in present)
    assert any(k.startswith("shardring_source_membership_changes_total") for k in present)
    rings.delete("counted")
    wait_for(lambda: not series(), "every series of the ring and of its query gone")



# ---- connections per tenant and limits, with an operator configured for them ------------------

@pytest.fixture
def configured_operator(crd, operator_env, control_plane):
    """Run an operator with connections and limits of the test's choosing."""
    from controller.core.limits import Access, Limits
    from controller.operator.settings import OperatorConfig
    from controller.sources.connections import ConsulConnection
    from tests.inprocess import InProcessOperator
    started = []

    def start(limits: Limits = Limits(), **access: Access):
        connections = {name: ConsulConnection.from_address(name, control_plane.consul_addr,
                                                           access=rule)
                       for name, rule in {"default": Access(), **access}.items()}
        running = InProcessOperator(config=OperatorConfig(connections=connections, limits=limits))
        started.append(running)
        return running.start()
    yield start
    for running in started:
        running.stop()


def test_a_connection_is_used_only_by_its_namespaces_datacenters_and_with_a_token(
        configured_operator, rings, consul_helper, namespace, core_v1):
    from controller.core.limits import Access
    configured_operator(
        elsewhere=Access(namespaces=("payments", "pay-*")),
        ours=Access(namespaces=(namespace[:4] + "*",), datacenters=("dc1",), require_token=True))
    service = service_name()
    consul_helper.register(service, f"{service}-0", port=9700)
    rings.create("foreign", quick(service, consul={"connection": "elsewhere"}))
    rings.create("anonymous", quick(service, consul={"connection": "ours"}))
    token = {"connection": "ours", "tokenSecretRef": {"name": "t"}}
    rings.create("far", {**quick(service, consul=token),
                         "service": {"name": service, "datacenter": "dc9"}})
    foreign = degraded(rings, "foreign", "UnknownConnection")["message"]
    assert f"namespace {namespace!r}" in foreign and "ours" not in foreign
    assert "tokenSecretRef" in degraded(rings, "anonymous", "TokenRequired")["message"]
    assert "'dc9'" in degraded(rings, "far", "DatacenterNotAllowed")["message"]
    # Allowed namespace, allowed datacenter (the dev agent's own) and a marked token: it serves.
    core_v1.create_namespaced_secret(namespace, k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name="t", labels={"shardring.io/source-credentials": "true"}),
        string_data={"token": "anything"}))
    rings.create("allowed", {**quick(service, consul=token),
                             "service": {"name": service, "datacenter": "dc1"}})
    wait_for(lambda: rings.ring("allowed-ring"), "the allowed ring published")
    assert not [c for c in core_v1.list_namespaced_config_map(namespace).items
                if c.metadata.name in ("foreign-ring", "anonymous-ring", "far-ring")]


def test_a_ring_over_a_limit_keeps_its_last_version_and_costs_nothing_more(
        configured_operator, rings, consul_helper, core_v1, namespace):
    from controller.core.limits import Limits
    memo = configured_operator(Limits(max_members=3, max_reply_bytes=64 << 10))
    small, big = service_name(), service_name()
    for n in range(3):
        consul_helper.register(small, f"{small}-{n}", port=9710 + n)
    rings.create("capped", quick(small))
    published = wait_for(lambda: rings.ring("capped-ring"), "published with 3 members")
    before = core_v1.read_namespaced_config_map("capped-ring", namespace).metadata.resource_version
    consul_helper.register(small, f"{small}-3", port=9713)
    message = degraded(rings, "capped", "LimitExceeded")["message"]
    assert "maxMembers" in message and "4 instances" in message
    assert core_v1.read_namespaced_config_map("capped-ring", namespace).metadata \
        .resource_version == before
    assert rings.ring("capped-ring").version == published.version

    # A reply larger than maxReplyBytes is never read whole: each instance's meta makes this
    # service's reply ~100 KiB against a 64 KiB limit.
    padding = {f"pad{i}": "x" * 500 for i in range(4)}  # Consul's limit is 512 per value
    for n in range(40):
        consul_helper.register(big, f"{big}-{n}", port=9800 + n, meta=padding)
    rings.create("bulky", quick(big))
    message = degraded(rings, "bulky", "LimitExceeded")["message"]
    assert "maxReplyBytes" in message
    consul = memo.sources.registries["consul"]
    watcher = next(w for w in consul.watchers.values() if w.key.query.service == big)
    requests = watcher.requests
    time.sleep(6)
    # The refused-query backoff (doubling to a minute) rather than the outage one (capped at 1 s,
    # which would ask ~6 times here).
    assert watcher.requests - requests <= 4, "an oversized reply is not fetched again and again"
