"""Registrations held as values (etcd keys) -> ring members: the formats the design notes use and
the JSON one, and bad values named by their key."""

from __future__ import annotations

import json

import pytest

from controller.core.membership import MembershipError, members_from
from controller.sources.registration import from_registration


def entry(name: str, value: str | bytes):
    raw = value.encode() if isinstance(value, str) else value
    return from_registration(f"etcd key '/s/{name}'", name, raw)


def test_plain_and_json_values_become_members_with_endpoints_weights_and_zones():
    entries = [entry("a", "10.0.0.1:9100"), entry("b", "[fd00::2]:9100"),
               entry("c", json.dumps({"address": "10.0.0.3", "port": 9200, "weight": 3,
                                      "zone": "z2", "metadata": {"rack": 7}})),
               entry("d", json.dumps({"address": "10.0.0.4:9300"}))]
    membership = members_from(entries, "node/id", "weights", "node-meta:zone")
    assert membership.ids == ("a", "b", "c", "d")  # node/id is the key's own name here
    assert membership.endpoints["b"].address == "fd00::2"
    assert (membership.endpoints["c"].port, membership.endpoints["d"].port) == (9200, 9300)
    weights = {m.id: m.weight for m in membership.members}
    zones = {m.id: m.zone for m in membership.members}
    assert weights == {"a": 1.0, "b": 1.0, "c": 3.0, "d": 1.0} and zones["c"] == "z2"
    by_meta = members_from([entries[2]], "meta:rack")
    assert by_meta.ids == ("7",)  # metadata values are strings, as Consul's meta are


@pytest.mark.parametrize("value,why", [
    ("{oops", "not valid JSON"), ("10.0.0.1", "neither JSON nor host:port"),
    (json.dumps({"port": 1}), 'no "address"'), (json.dumps(["10.0.0.1:1"]), "not an object"),
    (json.dumps({"address": "h", "port": "80"}), "not a port number"),
    (json.dumps({"address": "h:1", "weight": "heavy"}), "not a number"),
    (b"\xff\xfe", "not UTF-8"),
    # Ports outside 1-65535, written any way, are refused (as Consul's are), never published
    # in a ring.json its readers refuse.
    ("h:70000", "port '70000' is not a port number"), ("h:65536", "port '65536' is not"),
    ("10.0.0.1:99999999999999999999999", "port '99999999999999999999999' is not"),
    (json.dumps({"address": "h:9223372036854775808"}), "in \"address\" is not a port"),
    (json.dumps({"address": "h", "port": True}), "port True is not a port number"),
    ("h:\u0665", "neither JSON nor host:port"),  # (Arabic-Indic five: int() reads it)
    # Objects where text goes were published as Python's text of them ("{'a': 1}").
    (json.dumps({"address": "h:1", "zone": {"a": 1}}), "zone {'a': 1} is not a string"),
    (json.dumps({"address": "h:1", "metadata": {"x": [1]}}), "metadata 'x' is not a string"),
    (json.dumps({"address": 5}), '"address" 5 is not a host or host:port'),
    # Two ports that disagree: "port" was taken silently.
    (json.dumps({"address": "h:80", "port": 81}), '"address" gives port 80 and "port" 81'),
    # White space in a host was published in it.
    (json.dumps({"address": "10.0 .0.1", "port": 80}), "\"address\" '10.0 .0.1' is not a host"),
    (json.dumps({"address": "10.0.0.1\n:80"}), "is not a host or host:port"),
    # A bad port in the address was hidden by "port".
    (json.dumps({"address": "h:99999", "port": 9090}), "port '99999' in \"address\" is not"),
    ("10.0.0 .1:80", "neither JSON nor host:port"),
    # Nested deeper than the JSON parser recurses: RecursionError, not ValueError.
    ("[" * 5000 + "]" * 5000, "cannot be read (RecursionError)"),
    ('{"address": "h:1", "metadata": {"deep": ' + "[" * 5000 + "]" * 5000 + "}}",
     "cannot be read (RecursionError)"),
])
def test_a_bad_value_names_its_key_and_why(value, why):
    with pytest.raises(MembershipError) as refused:
        members_from([entry("ok", "10.0.0.1:1"), entry("bad", value)])
    assert "etcd key '/s/bad'" in str(refused.value) and why in str(refused.value)


def test_a_zero_weight_is_refused_like_a_consul_weight():
    with pytest.raises(MembershipError, match="must be > 0"):
        members_from([entry("z", json.dumps({"address": "h:1", "weight": 0}))], "id", "weights")


def test_zookeeper_specs_and_connections(tmp_path):
    from controller.core.limits import SettingsError
    from controller.core.spec import SpecError
    from controller.operator.settings import OperatorConfig
    from controller.sources.specs import parse_spec
    from controller.sources.zookeeper.query import ZooKeeperQuery
    config = parse_spec("r", {"zookeeper": {"path": "/services/web/", "addressField": "frontend"}})
    assert config.query == ZooKeeperQuery("default", "/services/web", "frontend")
    with pytest.raises(SpecError, match="spec.zookeeper.path"):
        parse_spec("r", {"zookeeper": {"path": "services"}})
    path = tmp_path / "c.yaml"
    path.write_text("zookeeper:\n  zk: {hosts: ['h1:2181', 'h2:2181'], chroot: /apps}\n")
    loaded = OperatorConfig.from_env({"SHARDRING_CONSUL_CONNECTIONS": str(path)})
    assert loaded.zookeeper["zk"].hosts == ("h1:2181", "h2:2181")
    assert ("zookeeper", "zk") in loaded.access() and not loaded.connections
    path.write_text("zookeeper:\n  zk: {hosts: ['h1:2181'], chroot: apps}\n")
    with pytest.raises(SettingsError, match="chroot"):
        OperatorConfig.from_env({"SHARDRING_CONSUL_CONNECTIONS": str(path)})


def test_the_address_field_is_the_rings_choice():
    value = json.dumps({"frontend": "10.0.0.9:8080"}).encode()
    member = from_registration("ZooKeeper node '/s/x'", "x", value, "frontend")
    assert (member.address, member.port) == ("10.0.0.9", 8080)
    assert 'no "address"' in from_registration("n", "x", value).invalid


def test_an_id_that_is_not_unicode_text_is_refused_not_a_crash():
    # JSON's lone surrogate escape decodes, but has no UTF-8: the ring's hash failed on it.
    lone = entry("a", rb'{"address": "10.0.0.1:80", "metadata": {"id": "web-\ud800"}}')
    with pytest.raises(MembershipError, match="not UTF-8 text"):
        members_from([lone], "meta:id")
    # An etcd key's bytes that are not UTF-8 (decoded with surrogateescape: two such keys stay
    # two keys) used as the id.
    key = b"/s/\xff".decode(errors="surrogateescape")
    with pytest.raises(MembershipError, match="not UTF-8 text"):
        members_from([from_registration(f"etcd key {key!r}", key[3:], b"10.0.0.1:80")], "id")


def test_a_huge_id_is_refused_and_quoted_short():
    # (Quoted whole in four conditions, and listed in the status, it made a status too large
    # to write.)
    huge = entry("a", json.dumps({"address": "h:1", "metadata": {"id": "x" * 200_000}}))
    with pytest.raises(MembershipError) as refused:
        members_from([huge], "meta:id")
    assert "200000 characters long, more than 1024" in str(refused.value)
    assert len(str(refused.value)) < 1000
    long_id = "y" * 1024  # the longest taken; two of them share it
    twins = [entry(name, json.dumps({"address": "h:1", "metadata": {"id": long_id}}))
             for name in ("a", "b")]
    with pytest.raises(MembershipError) as shared:
        members_from(twins, "meta:id")
    assert "share identity" in str(shared.value) and "(1024 characters)" in str(shared.value)
    assert len(str(shared.value)) < 1000


def test_port_0_is_any_port_as_ring_json_reads_it():
    assert (entry("z", "h:0").port, entry("p", "h:000080").port) == (0, 80)
    assert entry("j", json.dumps({"address": "h", "port": 0})).invalid is None
    agreeing = entry("a", json.dumps({"address": "h:80", "port": 80}))
    assert agreeing.invalid is None and agreeing.port == 80
    # Port 0 is any: the other port says which (a Go struct without omitempty writes 0).
    assert entry("g", json.dumps({"address": "h:9090", "port": 0})).port == 9090
    assert entry("o", json.dumps({"address": "h:0", "port": 9090})).port == 9090
    assert entry("s", json.dumps({"address": " h:80\n"})).address == "h"
    assert entry("n", "10.0.0.1:80\n").address == "10.0.0.1"  # (a value's own ends trimmed)
