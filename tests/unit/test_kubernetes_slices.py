"""EndpointSlices -> instances, pure: Kubernetes' endpoint conditions, identities, ports, and an
endpoint listed in two slices while they are updated one at a time."""

from __future__ import annotations

import pytest

from controller.core.instance import CRITICAL, PASSING
from controller.core.membership import members_from
from controller.sources.kubernetes.query import KubernetesQuery
from controller.sources.kubernetes.slices import instances_from_slices

QUERY = KubernetesQuery(namespace="team", service="web")


def slice_(name: str, *endpoints: dict, ports=({"name": "metrics", "port": 9100},),
           address_type: str = "IPv4") -> dict:
    return {"metadata": {"name": name}, "addressType": address_type,
            "endpoints": list(endpoints), "ports": list(ports)}


def ep(address: str, pod: str | None = None, hostname: str | None = None, **conditions) -> dict:
    found: dict = {"addresses": [address], "conditions": conditions}
    if pod:
        found["targetRef"] = {"kind": "Pod", "name": pod}
    if hostname:
        found["hostname"] = hostname
    return found


def test_conditions_as_kubernetes_defines_them():
    got = {i.name: (i.health, i.draining) for i in instances_from_slices([slice_(
        "a", ep("10.0.0.1", "ready"), ep("10.0.0.2", "nil"),  # nil: ready
        ep("10.0.0.3", "starting", ready=False),
        ep("10.0.0.4", "leaving", ready=False, serving=True, terminating=True),
        ep("10.0.0.5", "gone", ready=False, serving=False, terminating=True))], QUERY)}
    assert got == {"ready": (PASSING, False), "nil": (PASSING, False),
                   "starting": (CRITICAL, False), "leaving": (PASSING, True),
                   "gone": (CRITICAL, False)}
    membership = members_from(instances_from_slices([slice_(
        "a", ep("10.0.0.1", "ready", ready=True),
        ep("10.0.0.4", "leaving", ready=False, serving=True, terminating=True))], QUERY))
    assert membership.ids == ("ready",) and membership.draining == ("leaving",)


def test_identity_is_the_pod_else_the_hostname_else_the_address():
    names = [i.name for i in instances_from_slices([slice_(
        "a", ep("10.0.0.1", "pod-1"), ep("10.0.0.2", hostname="host-2"), ep("10.0.0.3"))], QUERY)]
    assert names == ["10.0.0.3", "host-2", "pod-1"]


def test_an_endpoint_in_two_slices_counts_once_the_more_available_kept():
    first = slice_("a", ep("10.0.0.1", "p", ready=False, serving=True, terminating=True))
    second = slice_("b", ep("10.0.0.1", "p", ready=True))
    for order in ([first, second], [second, first]):
        (only,) = instances_from_slices(order, QUERY)
        assert (only.health, only.draining) == (PASSING, False)


def test_ports_fqdn_slices_and_zones():
    two_ports = slice_("a", ep("10.0.0.1", "p"), ports=({"name": "http", "port": 80},
                                                        {"name": "metrics", "port": 9100}))
    (unnamed,) = instances_from_slices([two_ports], QUERY)
    assert "several ports" in (unnamed.invalid or "")
    (named,) = instances_from_slices([two_ports], KubernetesQuery("team", "web", "metrics"))
    assert (named.address, named.port, named.invalid) == ("10.0.0.1", 9100, None)
    (numbered,) = instances_from_slices([two_ports], KubernetesQuery("team", "web", 80))
    assert numbered.port == 80
    # "80" quoted in YAML is the number, unless a port is named "80" (names may be all digits)
    (quoted,) = instances_from_slices([two_ports], KubernetesQuery("team", "web", "80"))
    assert quoted.port == 80
    digits_named = slice_("d", ep("10.0.0.1", "p"), ports=({"name": "80", "port": 8080},
                                                          {"name": "http", "port": 80}))
    (by_name,) = instances_from_slices([digits_named], KubernetesQuery("team", "web", "80"))
    assert by_name.port == 8080
    (missing,) = instances_from_slices([two_ports], KubernetesQuery("team", "web", "grpc"))
    assert missing.invalid == (
        "the Service's endpoints have no port 'grpc' (a number is the port the Pods listen on, "
        "its targetPort, not the Service's port; they list http (80), metrics (9100))")
    assert instances_from_slices([slice_("f", ep("web.example"), address_type="FQDN")],
                                 QUERY) == ()
    zoned = {**ep("10.0.0.1", "p"), "zone": "eu-1a"}
    (instance,) = instances_from_slices([slice_("z", zoned)], QUERY)
    assert members_from([instance], zone_from="node-meta:zone").members[0].zone == "eu-1a"


def test_the_same_slices_give_the_same_instances_in_any_order():
    slices = [slice_(n, ep(f"10.0.{i}.1", f"p{i}")) for i, n in enumerate("cab")]
    assert instances_from_slices(slices, QUERY) == instances_from_slices(slices[::-1], QUERY)


def test_a_dual_stack_pod_keeps_its_ipv4_address_whatever_the_slices_names():
    for v4, v6 in (("web-abc", "web-xyz"), ("web-xyz", "web-abc")):
        slices = [slice_(v6, ep("fd00::1", "p"), address_type="IPv6"),
                  slice_(v4, ep("10.0.0.1", "p"))]
        (only,) = instances_from_slices(slices, QUERY)
        assert only.address == "10.0.0.1", (v4, v6)


def test_an_endpoint_readable_in_one_slice_is_kept_over_an_unreadable_listing():
    bad_ports = slice_("a", ep("10.0.0.1", "p"), ports=({"name": "x", "port": 1},
                                                        {"name": "y", "port": 2}))
    good = slice_("b", ep("10.0.0.1", "p"))
    (only,) = instances_from_slices([bad_ports, good], QUERY)
    assert only.invalid is None and only.port == 9100


@pytest.mark.parametrize("port", [-1, 0, 70000, "Bad Name!", "", "-metrics", "metrics-",
                                  "Metrics", "a" * 64, True])
def test_a_port_no_service_could_have_is_an_invalid_spec(port):
    from controller.core.spec import SpecError
    from controller.sources.specs import parse_spec
    with pytest.raises(SpecError, match="spec.kubernetes.port is a port's name"):
        parse_spec("r", {"kubernetes": {"service": "web", "port": port}, "shards": 8})


@pytest.mark.parametrize("port", [1, 9100, 65535, "metrics", "http-2", "h2c",
                                  "prometheus-metrics", "http--admin", "a" * 63])
def test_a_port_a_service_could_have_is_read(port):
    from controller.sources.specs import parse_spec
    assert parse_spec("r", {"kubernetes": {"service": "web", "port": port}, "shards": 8}
                      ).query.port == port


def test_no_endpoint_at_all_says_where_to_look():
    # (It said "0 serving endpoint(s)" only: a Service that does not exist looks the same from
    # the EndpointSlices, the only thing the operator reads.)
    from controller.core.limits import Access
    from controller.core.planner import Gathered, plan_pass, prepare
    from controller.core.source_state import Snapshot, SourceState
    from controller.core.spec import IN_CLUSTER
    from controller.core.views import RingObject
    from controller.sources.specs import read_spec
    ring = RingObject("team", "r", "uid", 1, {"kubernetes": {"service": "web"}}, {})
    config = prepare(ring, {("kubernetes", IN_CLUSTER): Access()}, "t", read_spec).config
    for slices in ([], [slice_("web-1", ep("10.0.0.1", "p1", ready=False, serving=False))]):
        found = instances_from_slices(slices, config.query)
        planned = plan_pass(ring, config, Gathered(None, SourceState(Snapshot(1, found, 0.0))),
                            1.0, "t")
        degraded = next(c for c in planned.status["conditions"] if c["type"] == "Degraded")
        assert degraded["reason"] == "NotEnoughMembers"
        assert "0 serving endpoint(s) of Service 'web' (no EndpointSlice lists a ready " \
            "endpoint for it: check that the Service exists" in degraded["message"]
