"""Write the shared test vectors: rings made by the operator's own engine and publisher, the
expected shard and owners of thousands of keys in each, and files every reader must refuse.

    .venv/bin/python clients/testdata/generate.py [output directory]

The operator (tests/unit/test_client_vectors.py), the Python client (clients/python/tests) and the
Go client (clients/go) are all tested against these files, and a test regenerates them and fails
if the checked-in ones differ: the three readers cannot drift apart. Deterministic: the same
engine writes the same bytes.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from controller.core import handover, ringfile  # noqa: E402
from controller.core.ring import Member, RingSpec, plan, shard_of  # noqa: E402

KEYS = 2000


def keys(seed: int) -> list[str]:
    """Targets, jobs and odd text: what readers will hash (unicode, empty, long, separators)."""
    rng = random.Random(seed)
    fixed = ["", "a", "10.0.0.1:9100", "node-exporter/10.0.0.1:9100", "ключ", "東京/1", "é",
             "emoji 🚀", "x" * 300, "tab\there", "line\nbreak", "slash/colon:semi;", "\u0000nul"]
    made = []
    while len(fixed) + len(made) < KEYS:
        kind = rng.randrange(4)
        if kind == 0:
            made.append(f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}:"
                        f"{rng.choice((80, 443, 8080, 9100, 9090))}")
        elif kind == 1:
            made.append(f"job-{rng.randrange(50)}/instance-{rng.randrange(10_000)}")
        elif kind == 2:
            made.append("".join(chr(rng.choice((rng.randrange(0x20, 0x7F),
                                                rng.randrange(0xA0, 0x3000))))
                                for _ in range(rng.randrange(1, 24))))
        else:
            made.append(f"queue-partition-{rng.randrange(1 << 32)}")
    return fixed + made


def ring_file(members: list[Member], spec: RingSpec, version: int, **extra) -> ringfile.RingFile:
    endpoints = {m.id: ringfile.Endpoint(f"10.1.{i // 250}.{i % 250}", 9100 + i % 3)
                 for i, m in enumerate(sorted(members, key=lambda m: m.id))}
    return ringfile.RingFile(plan(members, spec), version=version, source_index=version * 7,
                             endpoints=endpoints, shard_ring={"namespace": "vectors",
                                                              "name": "ring"}, **extra)


def handing_over() -> ringfile.RingFile:
    """A member joined: the balanced engine moved shards to it, and their previous owners keep
    serving them until it acknowledges (what the publisher writes during a planned move)."""
    before = [Member(f"worker-{i}") for i in range(5)]
    spec = RingSpec(512, 2)
    first = ring_file(before, spec, 1)
    after = [*before, Member("worker-5")]
    assignment = plan(after, spec, first.assignment)
    moves = handover.planned_moves(first, assignment, [m.id for m in after])
    second = ring_file(after, spec, 2)
    return ringfile.RingFile(assignment, version=2, source_index=14, endpoints=second.endpoints,
                             shard_ring=second.shard_ring, handover=moves)


def draining() -> ringfile.RingFile:
    """Two members drain: they own nothing; one still hands over shards it served."""
    staying = [Member(f"cache-{i}", zone=f"zone-{i % 2}") for i in range(6)]
    spec = RingSpec(256, 2)
    everyone = ring_file([*staying, Member("cache-6", zone="zone-0"),
                          Member("cache-7", zone="zone-1")], spec, 4)
    assignment = plan(staying, spec, everyone.assignment)
    moves = handover.planned_moves(everyone, assignment, [*(m.id for m in staying), "cache-6"])
    return ringfile.RingFile(assignment, version=5, source_index=35,
                             endpoints=everyone.endpoints, shard_ring=everyone.shard_ring,
                             draining=("cache-6", "cache-7"), handover=moves)


def valid() -> dict[str, ringfile.RingFile]:
    odd = ["a b", "node-a/web", "10.0.0.7:9100", "ключ/1", "東京", "é", "x" * 210,
           "under_score.dot-dash", "UPPER"]
    return {
        "one-shard": ring_file([Member(f"m-{i}") for i in range(3)], RingSpec(1), 1),
        "one-member": ring_file([Member("solo")], RingSpec(64), 1),
        "small": ring_file([Member(f"m-{i}") for i in range(3)], RingSpec(16), 3),
        "weighted": ring_file([Member(f"scraper-{i}", weight=(0.5, 1, 2, 3.25)[i % 4])
                               for i in range(10)], RingSpec(1024), 12),
        "replicated-zones": ring_file([Member(f"node-{i}", zone=f"zone-{'abc'[i % 3]}")
                                       for i in range(9)], RingSpec(4096, 3), 2),
        "rendezvous": ring_file([Member(f"r-{i}") for i in range(7)],
                                RingSpec(1000, 2, algorithm="rendezvous"), 1),
        "consistent": ring_file([Member(f"c-{i}") for i in range(5)],
                                RingSpec(300, 1, algorithm="consistent", virtual_nodes=50), 1),
        "odd-identities": ring_file([Member(i) for i in odd], RingSpec(512, 2), 9),
        "many-shards": ring_file([Member(f"p-{i}") for i in range(5)], RingSpec(65536), 1),
        "handover": handing_over(),
        "draining": draining(),
        "with-loads": by_load(),
    }


def by_load() -> ringfile.RingFile:
    """A ring balanced by load shows each member's load (a reader may ignore it)."""
    ring = ring_file([Member(f"s-{i}", weight=(1, 2)[i % 2]) for i in range(4)], RingSpec(256), 7)
    return replace(ring, member_load={"s-0": 1250, "s-1": 2610.5, "s-2": 0, "s-3": 2480})


def expectations(ring: ringfile.RingFile, seed: int) -> dict:
    """What a reader must answer for this ring: computed with the operator's own functions."""
    assignment = ring.assignment
    ids = [m.id for m in assignment.members]
    rows = assignment.table.tolist()
    cases = []
    for key in keys(seed):
        shard = shard_of(key, assignment.shards)
        cases.append([key, shard, [ids[i] for i in rows[shard]] + ring.handed_over(shard)])
    everyone = [*ids, *ring.draining]
    shards_of = {}
    for member in everyone:
        owned = set() if member in ring.draining else set(assignment.shards_of(member))
        shards_of[member] = sorted(owned | set(ring.handover.get(member, ())))
    at = [{"address": e.address, "port": e.port, "member": member}
          for member, e in sorted(ring.endpoints.items())]
    # An address shared by several members names none of them without its port.
    by_address: dict[str, list[str]] = {}
    for member, e in ring.endpoints.items():
        by_address.setdefault(e.address, []).append(member)
    at += [{"address": address, "port": None, "member": found[0] if len(found) == 1 else None}
           for address, found in sorted(by_address.items())]
    at.append({"address": "192.0.2.1", "port": None, "member": None})
    return {"version": ring.version, "members": ids, "draining": list(ring.draining),
            "loads": dict(ring.member_load),
            "cases": cases, "shardsOf": shards_of, "memberAt": at}


def invalid(base: str) -> dict[str, str]:
    """name -> ring.json text that every reader must refuse (each breaks one rule of
    docs/ring-format.md; the rest of the file is a valid ring)."""
    good = json.loads(base)

    def changed(**fields) -> str:
        document = json.loads(base)
        for name, value in fields.items():
            if value is None:
                document.pop(name, None)
            else:
                document[name] = value
        return json.dumps(document, sort_keys=True, ensure_ascii=False)

    members = good["members"]
    rows = good["assignment"]
    swapped = [members[1], members[0], *members[2:]]
    return {
        "not-json": base[: len(base) // 2],
        "not-an-object": json.dumps([good]),
        "format-missing": changed(format=None),
        "format-v2": changed(format="shardring.io/ring/v2"),
        "key-hash-unknown": changed(keyHash="xxhash64-mod"),
        "shards-missing": changed(shards=None),
        "shards-zero": changed(shards=0, assignment=[]),
        "shards-not-integer": base.replace(f'"shards":{good["shards"]}',
                                           f'"shards":{good["shards"]}.0'),
        "shards-boolean": changed(shards=True),
        "replication-above-members": changed(replicationFactor=len(members) + 1),
        "assignment-missing": changed(assignment=None),
        "assignment-short": changed(assignment=rows[:-1]),
        "assignment-row-length": changed(
            assignment=[[*row, (row[0] + 1) % len(members)] for row in rows]),
        "assignment-index-out-of-range": changed(assignment=[[len(members)], *rows[1:]]),
        "assignment-negative-index": changed(assignment=[[-1], *rows[1:]]),
        "assignment-not-integer": changed(assignment=[["0"], *rows[1:]]),
        "members-unsorted": changed(members=swapped),
        "members-duplicate": changed(members=[members[0], members[0], *members[2:]]),
        "member-id-not-string": changed(members=[{**members[0], "id": 7}, *members[1:]]),
        "member-weight-zero": changed(members=[{**members[0], "weight": 0}, *members[1:]]),
        "member-weight-not-finite": base.replace('"weight":1', '"weight":NaN', 1),
        "draining-also-member": changed(draining=[{"id": members[0]["id"]}]),
        "handover-unknown-member": changed(handover=[{"member": "nobody", "shards": [0]}]),
        "handover-shard-out-of-range": changed(
            handover=[{"member": members[0]["id"], "shards": [good["shards"]]}]),
        "handover-shard-null": changed(handover=[{"member": members[0]["id"], "shards": [None]}]),
        "assignment-null-index": changed(assignment=[[None], *rows[1:]]),
        "assignment-nested-list": changed(assignment=[[[0]], *rows[1:]]),
        "member-id-empty": changed(members=[{**members[0], "id": ""}, *members[1:]]),
        "member-weight-overflow": base.replace('"weight":1', '"weight":1e400', 1),
        "member-load-negative": changed(members=[{**members[0], "load": -1}, *members[1:]]),
        "member-load-not-a-number": changed(members=[{**members[0], "load": "12"},
                                                      *members[1:]]),
        # Keys are matched exactly: "Shards" is another (unknown) field, so shards is missing.
        "field-name-case": base.replace('"shards":', '"Shards":', 1),
        # The same key twice: the last counts (a weight of 0 here).
        "member-key-repeated": base.replace('"weight":1', '"weight":1,"weight":0', 1),
    }


def replicated_invalid(base: str) -> dict[str, str]:
    """Rules that only a replicated ring can break."""
    document = json.loads(base)
    document["assignment"] = [[row[0], row[0]] for row in document["assignment"]]
    return {"assignment-member-twice-in-a-row": json.dumps(document, sort_keys=True)}


def generate(out: Path) -> list[Path]:
    """Write every vector under ``out``; the files written."""
    written = []

    def write(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    for seed, (name, ring) in enumerate(sorted(valid().items())):
        write(out / "valid" / name / "ring.json", ringfile.render(ring))
        expected = expectations(ring, seed)
        lines = ",\n".join(json.dumps(case, ensure_ascii=False) for case in expected.pop("cases"))
        header = json.dumps(expected, ensure_ascii=False, sort_keys=True)[:-1]
        write(out / "valid" / name / "expected.json", f'{header},"cases":[\n{lines}\n]}}\n')
    # Fields a reader does not know are ignored, whatever they hold (checked by their answers
    # being the canonical ring's: expected.json is the small ring's).
    unknown = ringfile.render(valid()["small"]).replace(
        '{"algorithm"', '{"FORMAT":"v9","SHARDS":99,"future":{"huge":' + "9" * 5000 +
        ',"deep":' + "[" * 200 + "]" * 200 + '},"algorithm"', 1)
    write(out / "valid" / "unknown-fields" / "ring.json", unknown)
    write(out / "valid" / "unknown-fields" / "expected.json",
          (out / "valid" / "small" / "expected.json").read_text(encoding="utf-8"))
    small = ringfile.render(valid()["small"])
    for name, text in sorted({**invalid(small),
                              **replicated_invalid(ringfile.render(valid()["rendezvous"]))
                              }.items()):
        write(out / "invalid" / f"{name}.json", text)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    print(f"{len(generate(target))} files under {target}")
