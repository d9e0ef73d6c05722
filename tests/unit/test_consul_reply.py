"""How a Consul health reply is turned into the watcher's canonical entries, and the query sent."""

from __future__ import annotations

import json
import re

import pytest

from controller.sources.consul.client import blocking, health_params
from controller.sources.consul.decode import instances_from_health, instances_from_reply
from controller.sources.consul.query import ServiceQuery


def reply_entries(count: int) -> list[dict]:
    return [{"Node": {"Node": f"n{i % 3}", "Address": "10.0.0.1", "Meta": {"zone": "a"},
                      "CreateIndex": i},
             "Service": {"ID": f"web-{i}", "Address": f"10.1.0.{i}", "Port": 9000 + i,
                         "Tags": ["b", "a"], "Weights": {"Passing": 2, "Warning": 1}},
             "Checks": [{"Status": "passing"}, {"Status": "warning" if i == 2 else "passing"}]}
            for i in range(count)]


@pytest.mark.parametrize("indent", [None, 2])
def test_a_reply_decoded_entry_by_entry_equals_the_whole_decode(indent):
    entries = reply_entries(7)
    body = json.dumps(entries, indent=indent).encode()
    assert instances_from_reply(body) == instances_from_health(entries)
    assert instances_from_reply(b"[]") == instances_from_reply(b" null ") == ()


def test_a_broken_reply_is_an_error_not_an_empty_service():
    with pytest.raises(ValueError):
        instances_from_reply(b'[{"Node": {"Node": "n1"}, ')
    with pytest.raises(ValueError):
        instances_from_reply(b'{"error": "x"}')


def test_the_query_parameters_follow_the_spec():
    query = ServiceQuery(connection="default", service="web", datacenter="dc2",
                         tags=("a", "b"), node_meta=(("rack", "r1"),), only_passing=True,
                         filter='Service.Meta.x == "y"')
    assert health_params(query) == [
        ("tag", "a"), ("tag", "b"), ("dc", "dc2"), ("node-meta", "rack:r1"),
        ("filter", 'Service.Meta.x == "y"')]
    assert health_params(ServiceQuery(connection="default", service="web",
                                      only_passing=False)) == []
    # A hub's listings block until the index moves; the first one answers at once.
    assert blocking(42, "dc2") == [("index", "42"), ("wait", "55s"), ("dc", "dc2")]
    assert blocking(0) == []


@pytest.mark.parametrize("port", [-5, 65536, 99999, "9100", 1.5])
def test_a_port_no_reader_accepts_refuses_the_membership_and_names_the_instance(port):
    from controller.core.membership import MembershipError, members_from
    entries = reply_entries(3)
    entries[1]["Service"]["Port"] = port
    instances = instances_from_health(entries)
    with pytest.raises(MembershipError, match=rf"'web-1' on node 'n1': port {port!r} is not a"):
        members_from(instances)
    entries[1]["Checks"] = [{"Status": "critical"}]  # no member: its registration is not read
    assert len(members_from(instances_from_health(entries)).members) == 2
    for valid in (0, 65535):
        entries[1]["Service"]["Port"], entries[1]["Checks"] = valid, []
        assert len(members_from(instances_from_health(entries)).members) == 3


@pytest.mark.parametrize("address,port,problem", [
    ("10.9.9.9:1234", 9003, '"Address" gives port 1234 and "Port" 9003'),
    ("10.4.0.2 evil", 1, "\"Address\" '10.4.0.2 evil' is not a host or host:port"),
    ("10.4.0.2\n", 1, None),  # (the ends trimmed)
    ("h:99999", 1, "port '99999' in \"Address\" is not a port number"),
])
def test_an_address_is_checked_as_the_other_sources_registrations_are(address, port, problem):
    # (Both were published: ids '10.9.9.9:1234:9003' and '10.4.0.2 evil:1'.)
    from controller.core.membership import MembershipError, members_from
    entries = reply_entries(2)
    entries[1]["Service"].update(Address=address, Port=port)
    if problem is None:
        assert len(members_from(instances_from_health(entries)).members) == 2
        return
    with pytest.raises(MembershipError, match=re.escape(f"'web-1' on node 'n1': {problem}")):
        members_from(instances_from_health(entries))


@pytest.mark.parametrize("address,port,expected", [
    ("[fe80::1]", 9002, ("fe80::1", 9002)),  # as etcd's and ZooKeeper's are
    ("::1", 9001, ("::1", 9001)),
    ("h:1234", 0, ("h", 1234)),  # a port 0 is "any": the address narrows it
])
def test_addresses_are_read_as_the_other_sources_read_them(address, port, expected):
    entries = reply_entries(1)
    entries[0]["Service"].update(Address=address, Port=port)
    instance = instances_from_health(entries)[0]
    assert (instance.address, instance.port, instance.invalid) == (*expected, None)
    entries[0]["Service"]["Address"] = ""  # the node's address, checked the same way
    entries[0]["Node"]["Address"] = "10.0.0.1 x"
    problem = instances_from_health(entries)[0].invalid
    assert problem is not None and "\"Node.Address\" '10.0.0.1 x' is not a host" in problem
