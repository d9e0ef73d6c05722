"""The shared test vectors (clients/testdata): made by the operator's own engine and publisher,
read back by the operator as every client reads them, and never drifting from what the engine
makes now (the Python client's tests: clients/python/tests; the Go client's: clients/go)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from controller.core import ringfile
from controller.core.ring import shard_of

TESTDATA = Path(__file__).resolve().parents[2] / "clients" / "testdata"


def generator():
    spec = importlib.util.spec_from_file_location("generate", TESTDATA / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.json"))}


def test_the_checked_in_vectors_are_what_the_engine_makes_now(tmp_path):
    generator().generate(tmp_path)
    fresh, checked_in = files(tmp_path), files(TESTDATA)
    assert sorted(fresh) == sorted(checked_in), "regenerate: clients/testdata/generate.py"
    drifted = [name for name in fresh if fresh[name] != checked_in[name]]
    assert drifted == [], "regenerate: .venv/bin/python clients/testdata/generate.py"


@pytest.mark.parametrize("name", sorted(p.name for p in (TESTDATA / "valid").iterdir()))
def test_the_operator_reads_each_vector_as_the_clients_must(name):
    text = (TESTDATA / "valid" / name / "ring.json").read_text()
    ring = ringfile.parse(text)
    if name != "unknown-fields":  # (the one vector the operator did not write)
        assert ringfile.render(ring) == text  # read back, written again: the same bytes
    expected = json.loads((TESTDATA / "valid" / name / "expected.json").read_text())
    ids = [m.id for m in ring.assignment.members]
    rows = ring.assignment.table.tolist()
    for key, shard, owners in expected["cases"]:
        assert shard_of(key, ring.assignment.shards) == shard
        assert [ids[i] for i in rows[shard]] + ring.handed_over(shard) == owners


@pytest.mark.parametrize("name", sorted(p.name for p in (TESTDATA / "invalid").iterdir()))
def test_the_operator_refuses_each_invalid_file(name):
    with pytest.raises(ringfile.RingFileError):
        ringfile.parse((TESTDATA / "invalid" / name).read_text())
