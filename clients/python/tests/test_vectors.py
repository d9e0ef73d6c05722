"""The Python client against the shared vectors, in this interpreter and with no site-packages
on every interpreter here that the client supports (it declares Python >= 3.9)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest

import shardring_client as client

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
TESTDATA = HERE.parents[1] / "testdata"
sys.path.insert(0, str(HERE))

from check_vectors import check  # noqa: E402


def interpreters() -> list[str]:
    """This one, and the oldest supported one when the machine has it (pyenv's)."""
    found = [sys.executable]
    found += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9.*/bin/python3.9")))[-1:]
    return found


def test_every_vector_is_answered_and_every_invalid_file_refused():
    assert check(str(TESTDATA)) > 11 * 2000


@pytest.mark.parametrize("python", interpreters())
def test_the_client_needs_nothing_but_the_standard_library(python):
    # -S: no site-packages, -I: no PYTHONPATH, no user site: only the standard library and src.
    run = subprocess.run([python, "-S", "-I", str(HERE / "check_vectors.py"), str(SRC),
                          str(TESTDATA)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.endswith("checks passed\n")
    modules = subprocess.run(
        [python, "-S", "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
         "before = set(sys.modules); import shardring_client; "
         "print(' '.join(sorted(m for m in set(sys.modules) - before)))", str(SRC)],
        capture_output=True, text=True, check=True).stdout.split()
    stdlib = set(sys.stdlib_module_names)
    assert {m.split(".")[0] for m in modules} - stdlib == {"shardring_client"}


@pytest.mark.parametrize("name", sorted(p.name for p in (TESTDATA / "invalid").iterdir()))
def test_each_invalid_file_is_refused_with_a_reason(name):
    with pytest.raises(client.RingFormatError) as refused:
        client.parse((TESTDATA / "invalid" / name).read_bytes())
    assert str(refused.value)


def test_the_handover_rule_both_owners_serve_a_moving_shard_until_it_lands():
    ring = client.load(TESTDATA / "valid" / "handover")
    previous, shards = next(iter(ring.handover.items()))
    shard = shards[0]
    assert ring.handing_over(shard) == [previous]
    new = ring.assigned(shard)
    assert previous not in new and ring.owners_of(shard) == [*new, previous]
    assert shard in ring.shards_of(previous) and all(shard in ring.shards_of(m) for m in new)


def test_a_member_finds_itself_by_identity_or_address():
    ring = client.load(TESTDATA / "valid" / "odd-identities")
    member = ring.member("ключ/1")
    assert member.key != member.id and member.address is not None
    assert ring.find(identity="ключ/1") == "ключ/1"
    assert ring.find(address=member.address, port=member.port) == "ключ/1"
    with pytest.raises(LookupError, match="192.0.2.9:80"):
        ring.find(address="192.0.2.9", port=80)
    with pytest.raises(LookupError):
        ring.find(identity="not-there")



def test_loads_are_exposed_in_prometheus_text_format():
    text = client.load_exposition({17: 1234.0, 3: 0.5})
    assert text.endswith('shardring_shard_load{shard="3"} 0.5\n'
                         'shardring_shard_load{shard="17"} 1234.0\n')
    with pytest.raises(ValueError):
        client.load_exposition({1: float("nan")})
