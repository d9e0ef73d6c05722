"""The workload client and the ring show/lookup CLI agree with the operator's assignment."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.client import MountedRing
from controller.core import ringfile
from controller.core.render import configmap_data
from controller.core.ring import Member, RingSpec, plan


def kubelet_volume(root: Path, data: dict[str, str], version: str) -> None:
    """Lay files out the way kubelet does: ..data -> a timestamped dir, keys -> ..data/<key>."""
    target = root / f"..{version}"
    target.mkdir()
    for key, value in data.items():
        (target / key).write_text(value)
    link = root / "..data_tmp"
    link.symlink_to(target.name)
    os.replace(link, root / "..data")  # the atomic swap
    for key in data:
        if not (root / key).is_symlink():
            (root / key).symlink_to(f"..data/{key}")


def independent_owners(document: dict, key: str) -> list[str]:
    shard = int.from_bytes(hashlib.md5(key.encode()).digest()[8:16], "big") % document["shards"]
    return [document["members"][i]["id"] for i in document["assignment"][shard]]


def test_client_answers_match_ring_json_and_follow_a_swap(tmp_path):
    members = [Member(f"scraper-{i}") for i in range(5)]
    first = ringfile.RingFile(plan(members, RingSpec(128, 2)), version=1)
    kubelet_volume(tmp_path, configmap_data(first, True), "v1")
    seen = []
    ring = MountedRing(tmp_path, me="scraper-1", on_change=seen.append)
    document = json.loads((tmp_path / "ring.json").read_text())
    targets = [f"10.0.{i // 100}.{i % 100}:9100" for i in range(500)]
    for target in targets:
        assert ring.owners(target) == independent_owners(document, target)
        assert ring.owner(target) == ring.owners(target)[0]
        assert ring.is_mine(target) == ("scraper-1" in ring.owners(target))
    mine = [int(line) for line in (tmp_path / "member.scraper-1").read_text().split()]
    assert ring.shards_of() == mine
    assert not ring.refresh()  # nothing changed: a stat, no reload
    second = ringfile.RingFile(plan(members[1:], RingSpec(128, 2), first.assignment), version=2)
    kubelet_volume(tmp_path, configmap_data(second, True), "v2")
    assert ring.refresh() and seen and seen[-1].version == 2
    document = json.loads((tmp_path / "ring.json").read_text())
    for target in targets:
        assert ring.owners(target) == independent_owners(document, target)


def test_ring_show_and_lookup_cli(tmp_path):
    assignment = plan([Member("a"), Member("b", weight=3)], RingSpec(64))
    (tmp_path / "ring.json").write_text(ringfile.render(ringfile.RingFile(assignment, version=4)))
    show = subprocess.run([sys.executable, "-m", "controller", "ring", "show", str(tmp_path)],
                          capture_output=True, text=True)
    assert show.returncode == 0
    assert "ring version 4: 2 members, 64 shards" in show.stdout
    rows = {line.split()[0]: line.split()[1:] for line in show.stdout.splitlines()[2:]}
    assert rows == {"a": ["16", "25.00%"], "b": ["48", "75.00%"]}
    lookup = subprocess.run([sys.executable, "-m", "controller", "ring", "lookup", "--key",
                             "10.0.0.1:9100", str(tmp_path / "ring.json")],
                            capture_output=True, text=True)
    key, shard, owners = lookup.stdout.strip().split("\t")
    document = json.loads((tmp_path / "ring.json").read_text())
    assert owners == ",".join(independent_owners(document, key))


def test_a_member_finds_itself_by_identity_or_by_its_registered_endpoint(tmp_path):
    # node/id identities carry a "/", which is not a ConfigMap key character.
    ids = ["node-a/web", "node-b/web", "node-c/web"]
    endpoints = {m: ringfile.Endpoint(f"10.0.0.{n}", 8080) for n, m in enumerate(ids, 1)}
    endpoints["node-c/web"] = ringfile.Endpoint("10.0.0.2", 9090)  # two instances on one address
    assignment = plan([Member(m) for m in ids], RingSpec(32))
    ring_file = ringfile.RingFile(assignment, version=3, endpoints=endpoints)
    kubelet_volume(tmp_path, configmap_data(ring_file, False), "v3")
    by_name = MountedRing(tmp_path, me="node-b/web")
    by_address = MountedRing(tmp_path, address="10.0.0.2", port=8080)
    assert by_address.shards_of() == by_name.shards_of() == assignment.shards_of("node-b/web")
    assert by_address.ring.member_at("10.0.0.1") == "node-a/web"
    assert by_address.ring.member_at("10.0.0.2") is None  # ambiguous without the port
    assert by_address.ring.member_at("10.0.0.9", 8080) is None
    mine = [int(line) for line in
            (tmp_path / f"member.{ring_file.keys()['node-b/web']}").read_text().split()]
    assert by_address.shards_of() == mine
    lookup = subprocess.run([sys.executable, "-m", "controller", "ring", "lookup", "--address",
                             "10.0.0.2:9090", str(tmp_path)], capture_output=True, text=True)
    assert lookup.returncode == 0, lookup.stderr
    member, key, count, shards = lookup.stdout.strip().split("\t")
    assert member == "member node-c/web" and key == f"key {ring_file.keys()['node-c/web']}"
    assert [int(s) for s in shards.split(",")] == assignment.shards_of("node-c/web")
    by_member = subprocess.run([sys.executable, "-m", "controller", "ring", "lookup", "--member",
                                "node-c/web", str(tmp_path)], capture_output=True, text=True)
    assert by_member.stdout == lookup.stdout
    unknown = subprocess.run([sys.executable, "-m", "controller", "ring", "lookup", "--member",
                              "web", str(tmp_path)], capture_output=True, text=True)
    assert unknown.returncode == 2 and "'web' is not a member" in unknown.stderr


@pytest.mark.parametrize("given", ["[fd00::2]:9090", "[fd00::2]"])
def test_ring_lookup_finds_an_ipv6_member_by_address(tmp_path, given):
    # (Neither "[::1]:9001" nor "::1:9001" was found.)
    from controller.cli import _address_and_port
    assert _address_and_port("fd00::2") == ("fd00::2", None)
    assert _address_and_port("10.0.0.2:9090") == ("10.0.0.2", 9090)
    endpoints = {"a": ringfile.Endpoint("fd00::1", 9090), "b": ringfile.Endpoint("fd00::2", 9090)}
    ring_file = ringfile.RingFile(plan([Member("a"), Member("b")], RingSpec(8)), version=1,
                                  endpoints=endpoints)
    kubelet_volume(tmp_path, configmap_data(ring_file, False), "v1")
    lookup = subprocess.run([sys.executable, "-m", "controller", "ring", "lookup", "--address",
                             given, str(tmp_path)], capture_output=True, text=True)
    assert lookup.returncode == 0, lookup.stderr
    assert lookup.stdout.startswith("member b\t")


def test_the_sources_position_has_a_neutral_name_and_ring_json_keeps_its_first():
    from controller.client import RingVersion
    ring = ringfile.RingFile(plan([Member("a"), Member("b")], RingSpec(4)), version=2,
                             source_index=41, service={"source": "etcd"})
    text = ringfile.render(ring)
    assert json.loads(text)["consulIndex"] == 41  # the name existing readers know
    assert RingVersion.from_text(text).source_index == 41
