"""Registrations held as values (etcd keys) -> ring members: the formats the design notes use and
the JSON one, and bad values named by their key."""

from __future__ import annotations

import json

import pytest

from controller.membership import MembershipError, members_from, registration_entry


def entry(name: str, value: str | bytes):
    raw = value.encode() if isinstance(value, str) else value
    return registration_entry(f"etcd key '/s/{name}'", name, raw)


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
])
def test_a_bad_value_names_its_key_and_why(value, why):
    with pytest.raises(MembershipError) as refused:
        members_from([entry("ok", "10.0.0.1:1"), entry("bad", value)])
    assert "etcd key '/s/bad'" in str(refused.value) and why in str(refused.value)


def test_a_zero_weight_is_refused_like_a_consul_weight():
    with pytest.raises(MembershipError, match="must be > 0"):
        members_from([entry("z", json.dumps({"address": "h:1", "weight": 0}))], "id", "weights")
