"""Check shardring_client against the shared vectors (clients/testdata) with the standard library
alone, so it can run as ``python -S -I check_vectors.py <src> <testdata>``: no site-packages, no
pytest, on the oldest Python the client supports. The pytest tests import and call it too."""

from __future__ import annotations

import json
import os
import sys


def check(testdata: str) -> int:
    """Every vector answered as expected and every invalid file refused; the number of checks.
    Raises AssertionError naming the first disagreement."""
    import shardring_client as client
    checks = 0
    valid = os.path.join(testdata, "valid")
    for name in sorted(os.listdir(valid)):
        ring = client.load(os.path.join(valid, name))
        with open(os.path.join(valid, name, "expected.json"), encoding="utf-8") as file:
            expected = json.load(file)
        assert ring.version == expected["version"], name
        assert list(ring.members) == expected["members"], name
        assert list(ring.draining) == expected["draining"], name
        for member in (*ring.members, *ring.draining):
            assert ring.member(member).load == expected["loads"].get(member), (name, member)
            checks += 1
        for key, shard, owners in expected["cases"]:
            assert ring.shard(key) == shard, (name, key)
            assert ring.owners(key) == owners, (name, key)
            assert ring.owner(key) == owners[0], (name, key)
            assert all(ring.is_mine(key, owner) for owner in owners), (name, key)
            outsider = next((m for m in ring.members if m not in owners), None)
            assert outsider is None or not ring.is_mine(key, outsider), (name, key)
            checks += 1
        for member, shards in expected["shardsOf"].items():
            assert ring.shards_of(member) == shards, (name, member)
            checks += 1
        for case in expected["memberAt"]:
            assert ring.member_at(case["address"], case["port"]) == case["member"], (name, case)
            checks += 1
    invalid = os.path.join(testdata, "invalid")
    for name in sorted(os.listdir(invalid)):
        with open(os.path.join(invalid, name), "rb") as file:
            text = file.read()
        try:
            client.parse(text)
        except client.RingFormatError:
            checks += 1
        else:
            raise AssertionError(f"{name} was accepted")
    return checks


if __name__ == "__main__":
    sys.path.insert(0, sys.argv[1])
    print(check(sys.argv[2]), "checks passed")
