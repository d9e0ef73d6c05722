"""``ring diff``: who joined and left, which shards moved from whom to whom."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from controller.core import ringfile
from controller.core.ring import Member, RingSpec, plan
from controller.core.ringdiff import diff

REPO = Path(__file__).resolve().parents[2]


def ring(ids: list[str], version: int, previous: ringfile.RingFile | None = None,
         shards: int = 32, replication: int = 1, draining: tuple[str, ...] = ()
         ) -> ringfile.RingFile:
    assignment = plan([Member(i) for i in ids], RingSpec(shards, replication),
                      previous.assignment if previous else None)
    return ringfile.RingFile(assignment, version=version, draining=draining)


def test_a_leave_and_a_join_name_the_members_and_every_moved_shard():
    before = ring(["a", "b", "c"], 3)
    after = ring(["a", "c", "d"], 4, before)
    found = diff(before, after)
    assert (found.joined, found.left, found.before, found.after) == (("d",), ("b",), 3, 4)
    # Every shard whose owner differs appears once, under its previous and its new owner.
    changed = {s for s in range(32) if before.assignment.owners[s] != after.assignment.owners[s]}
    listed = [s for move in found.moves for s in move.shards]
    assert sorted(listed) == sorted(changed) and found.moved == len(changed)
    for move in found.moves:
        for shard in move.shards:
            assert before.assignment.owners[shard] == (move.source,)
            assert after.assignment.owners[shard] == (move.target,)
    assert set(before.assignment.shards_of("b")) <= set(listed)  # the leaver's shards moved


def test_replicas_pair_what_one_owner_lost_with_what_another_gained():
    before = ring(["a", "b", "c", "d"], 1, replication=2)
    after = ring(["a", "b", "c", "d", "e"], 2, before, replication=2)
    found = diff(before, after)
    assert found.joined == ("e",) and not found.left
    assert all(move.target == "e" for move in found.moves)
    assert found.moved == after.assignment.loads["e"]


def test_draining_is_not_leaving_and_a_new_shard_count_is_said_plainly():
    before = ring(["a", "b"], 1)
    after = ring(["a"], 2, before, draining=("b",))
    found = diff(before, after)
    assert (found.left, found.draining) == ((), ("b",))
    gone = diff(after, ring(["a"], 3, after))  # the drained member finally goes
    assert (gone.left, gone.drained, gone.moved) == ((), ("b",), 0)  # as the event counts it
    resized = diff(before, ring(["a", "b"], 3, shards=64))
    assert resized.resized and "shard count changed" in "\n".join(resized.lines())


def test_a_new_replication_factor_counts_as_the_operator_counts_it():
    before = ring(["a", "b", "c", "d"], 1, replication=2)
    after = ring(["a", "b", "c", "d"], 2, before, replication=3)
    found = diff(before, after)
    assert found.moved == after.assignment.moved_from(before.assignment) > 0
    assert all(move.source == "" for move in found.moves)  # replicas added, none taken away


def test_the_command_reads_files_or_mounted_directories(tmp_path):
    before = ring(["a", "b", "c"], 3)
    after = ring(["a", "c"], 4, before)
    (tmp_path / "v3.json").write_text(ringfile.render(before))
    (tmp_path / "mounted").mkdir()
    (tmp_path / "mounted" / "ring.json").write_text(ringfile.render(after))
    run = [sys.executable, "-m", "controller", "ring", "diff", str(tmp_path / "v3.json"),
           str(tmp_path / "mounted")]
    text = subprocess.run(run, cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert text.splitlines()[:2] == ["ring version 3 -> 4", "left: b"]
    assert f"moved: {len(before.assignment.shards_of('b'))} shard replicas" in text
    document = json.loads(subprocess.run(run + ["--json"], cwd=REPO, capture_output=True,
                                         text=True, check=True).stdout)
    assert document["left"] == ["b"] and {m["from"] for m in document["moves"]} == {"b"}
    missing = subprocess.run(run[:-2] + [str(tmp_path / "nope.json"), str(tmp_path / "v3.json")],
                             cwd=REPO, capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.startswith("error: cannot read")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    binary = subprocess.run(run[:-2] + [str(tmp_path / "binary.json"), str(tmp_path / "v3.json")],
                            cwd=REPO, capture_output=True, text=True)
    assert binary.returncode == 2 and "Traceback" not in binary.stderr
