"""Following a ring directory: kubelet's layout (and the agent's, the same), a swap under a
reader that never sees half of it, a bad new version that leaves the last good one in place."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

import shardring_client as client

TESTDATA = Path(__file__).resolve().parents[2] / "testdata"
SMALL = (TESTDATA / "valid" / "small" / "ring.json").read_text()
WEIGHTED = (TESTDATA / "valid" / "weighted" / "ring.json").read_text()


class KubeletVolume:
    """Writes versions as kubelet's AtomicWriter does: a new ``..<stamp>`` directory, the
    ``..data`` link renamed over the old one, the old directory deleted at once."""

    def __init__(self, root: Path):
        self.root, self.count = root, 0

    def write(self, files: dict[str, str]) -> None:
        self.count += 1
        stamp = f"..2026_12_02_00_00_00.{self.count:09d}"
        (self.root / stamp).mkdir()
        for name, text in files.items():
            (self.root / stamp / name).write_text(text)
        old = os.readlink(self.root / "..data") if (self.root / "..data").is_symlink() else None
        (self.root / "..data_tmp").symlink_to(stamp)
        os.replace(self.root / "..data_tmp", self.root / "..data")
        for name in files:
            if not (self.root / name).is_symlink():
                (self.root / name).symlink_to(f"..data/{name}")
        if old:
            shutil.rmtree(self.root / old)


def versioned(text: str, version: int) -> str:
    return text.replace('"ringVersion":3,', f'"ringVersion":{version},', 1)


def test_a_new_version_is_taken_on_refresh_and_announced_once(tmp_path):
    volume = KubeletVolume(tmp_path)
    volume.write({"ring.json": SMALL})
    seen: list[client.Ring] = []
    follower = client.RingFollower(tmp_path, on_change=seen.append)
    assert follower.ring.version == 3 and not follower.refresh() and seen == []
    volume.write({"ring.json": WEIGHTED})
    assert follower.refresh() and [r.version for r in seen] == [12]
    assert not follower.refresh() and len(seen) == 1


def test_a_reader_never_sees_a_half_swapped_directory(tmp_path):
    volume = KubeletVolume(tmp_path)
    volume.write({"ring.json": versioned(SMALL, 1)})
    follower = client.RingFollower(tmp_path)
    done = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        for version in range(2, 400):
            volume.write({"ring.json": versioned(SMALL, version)})
            # A swap a millisecond (kubelet: one a minute at most). Back to back, this thread
            # kept the GIL for several swaps while the reader sat between its readlink and its
            # open: on a loaded machine, five misses in a row (CI, once).
            time.sleep(0.001)
        done.set()
    writer = threading.Thread(target=write)
    writer.start()
    versions = [1]
    while not done.is_set():
        try:
            follower.refresh()
            if follower.error:
                failures.append(AssertionError(follower.error))
            versions.append(client.read(tmp_path).version)
        except (OSError, client.RingFormatError) as error:
            failures.append(error)
    writer.join()
    follower.refresh()
    assert failures == []
    assert follower.ring.version == 399 and versions == sorted(versions)


def test_a_bad_new_version_keeps_the_last_good_ring_and_says_why(tmp_path):
    volume = KubeletVolume(tmp_path)
    volume.write({"ring.json": SMALL})
    seen: list[client.Ring] = []
    follower = client.RingFollower(tmp_path, on_change=seen.append)
    volume.write({"ring.json": SMALL.replace('"shards":16', '"shards":17')})
    assert not follower.refresh()
    assert follower.ring.version == 3 and "assignment has 16 rows for 17 shards" in follower.error
    volume.write({"ring.json": WEIGHTED})
    assert follower.refresh() and follower.error is None and [r.version for r in seen] == [12]


def test_plain_files_and_directories_are_followed_too(tmp_path):
    path = tmp_path / "ring.json"
    path.write_text(SMALL)
    follower = client.RingFollower(path)
    os.replace(tmp_path.joinpath("new").write_text(WEIGHTED) and tmp_path / "new", path)
    assert follower.refresh() and follower.ring.version == 12
    assert client.RingFollower(tmp_path).ring.version == 12
    with pytest.raises(FileNotFoundError):
        client.RingFollower(tmp_path / "absent")


def test_versions_yields_the_current_ring_then_each_new_one_until_stopped(tmp_path):
    volume = KubeletVolume(tmp_path)
    volume.write({"ring.json": SMALL})
    stop = threading.Event()
    follower = client.RingFollower(tmp_path)
    got = []
    for ring in follower.versions(interval=0.01, stop=stop):
        got.append(ring.version)
        if len(got) == 1:
            volume.write({"ring.json": WEIGHTED})
        else:
            stop.set()
    assert got == [3, 12]


def test_a_mounted_ring_answers_for_its_member_found_by_address(tmp_path):
    volume = KubeletVolume(tmp_path)
    volume.write({"ring.json": WEIGHTED})
    ring = client.load(tmp_path)
    me = ring.member(ring.members[3])
    mounted = client.MountedRing(tmp_path, address=me.address, port=me.port)
    assert mounted.whoami() == me.id
    assert mounted.shards_of() == ring.shards_of(me.id)
    key = next(k for k in (f"target-{i}" for i in range(1000)) if ring.owner(k) == me.id)
    assert mounted.is_mine(key) and mounted.owners(key) == [me.id]
    with pytest.raises(ValueError):
        client.MountedRing(tmp_path).is_mine(key)


def test_a_directory_that_goes_away_and_comes_back_clears_the_error(tmp_path):
    volume = KubeletVolume(tmp_path / "ring")
    volume.root.mkdir()
    volume.write({"ring.json": SMALL})
    follower = client.RingFollower(volume.root)
    os.rename(volume.root, tmp_path / "away")
    assert not follower.refresh() and "No such file" in follower.error
    assert follower.ring.version == 3  # the last ring stays
    os.rename(tmp_path / "away", volume.root)
    assert not follower.refresh() and follower.error is None
