"""Reading a ring from a directory that is swapped all at once, and following it.

Kubelet mounts a ConfigMap as ``<dir>/..<timestamp>/`` (one version's files), ``<dir>/..data``
(a symlink to the current one) and ``<dir>/ring.json`` (a symlink to ``..data/ring.json``); a
new version is a new timestamped directory and one rename of ``..data``, after which the old
directory is deleted. The ring agent writes its directory the same way. So a reader resolves
``..data`` once and reads from what it resolved: never half of one version and half of another.
If the version it resolved is deleted before it opens the file, it resolves again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Callable, Union

from shardring_client._ring import Key, Ring, RingFormatError, parse

DATA = "..data"
RING_JSON = "ring.json"
_ATTEMPTS = 5  # swaps in a row while one read is under way: not seen in practice

Path = Union[str, "os.PathLike[str]"]


def _resolved(path: str) -> tuple[str, object]:
    """(the ring.json to open, a cheap stamp that changes with every new version)."""
    found = path
    if os.path.isdir(path):
        try:
            target = os.readlink(os.path.join(path, DATA))
            return os.path.join(path, target, RING_JSON), target
        except OSError:  # a plain directory holding ring.json
            found = os.path.join(path, RING_JSON)
    info = os.stat(found)
    return found, (info.st_ino, info.st_mtime_ns, info.st_size)


def _read(path: str) -> tuple[bytes, object]:
    for _ in range(_ATTEMPTS):
        found, stamp = _resolved(path)
        try:
            with open(found, "rb") as file:
                return file.read(), stamp
        except FileNotFoundError:
            if found == os.path.join(path, RING_JSON) or not os.path.isdir(path):
                raise  # not a swapped directory: the file is really not there
    raise OSError(f"{path} was swapped {_ATTEMPTS} times while being read")


def read(path: Path) -> Ring:
    """The ring in ``path``: a ring.json file, or a directory holding one (kubelet's layout or
    a plain directory). RingFormatError if it is not a valid ring; OSError if it is not there."""
    return parse(_read(os.fspath(path))[0])


class RingFollower:
    """Follows a ring.json file or directory: :meth:`refresh` is a readlink or a stat unless a
    new version arrived. A new version that is not a valid ring is not taken: the last valid one
    stays, and :attr:`error` says why (refreshed with every new version)."""

    def __init__(self, path: Path, on_change: Callable[[Ring], None] | None = None):
        self.path = os.fspath(path)
        self.on_change = on_change
        self.error: str | None = None
        self._stamp: object = None
        text, self._stamp = _read(self.path)
        self.ring: Ring = parse(text)  # no valid ring at the start: raise, nothing to keep

    def refresh(self) -> bool:
        """Load a new version if there is one; True (after the callback) when one was taken."""
        try:
            if _resolved(self.path)[1] == self._stamp:
                return False
            text, stamp = _read(self.path)
        except OSError as error:  # gone for now (a volume being remounted): keep the last ring
            self.error = f"{self.path}: {error.strerror or error}"
            self._stamp = None  # read again once it is back, which clears the error
            return False
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            ring = parse(text)
        except RingFormatError as error:
            self.error = str(error)
            return False
        self.error = None
        changed = ring.version != self.ring.version or ring.hash != self.ring.hash
        self.ring = ring
        if changed and self.on_change is not None:
            self.on_change(ring)
        return changed

    def versions(self, interval: float = 1.0,
                 stop: threading.Event | None = None) -> Iterator[Ring]:
        """The current ring, then each new one as it arrives (checked every ``interval``
        seconds) until ``stop`` is set."""
        stop = stop or threading.Event()
        yield self.ring
        while not stop.wait(interval):
            if self.refresh():
                yield self.ring


class MountedRing(RingFollower):
    """A ring followed from its directory by one member, who asks about itself.

    ``me`` is this member's identity; or give the ``address`` (and ``port``) it registered with,
    and the member at that endpoint is looked up in each version."""

    def __init__(self, path: Path, me: str | None = None,
                 on_change: Callable[[Ring], None] | None = None, *,
                 address: str | None = None, port: int | None = None):
        self.me, self.address, self.port = me, address, port
        super().__init__(path, on_change)

    def owner(self, key: Key) -> str:
        return self.ring.owner(key)

    def owners(self, key: Key) -> list[str]:
        return self.ring.owners(key)

    def shards_of(self, member: str | None = None) -> list[int]:
        return self.ring.shards_of(member or self.whoami())

    def is_mine(self, key: Key) -> bool:
        return self.ring.is_mine(key, self.whoami())

    def whoami(self) -> str:
        """This member's id in the current version (LookupError if it is not listed)."""
        if self.me:
            return self.me
        if self.address:
            return self.ring.find(address=self.address, port=self.port)
        raise ValueError("MountedRing(me=...) or MountedRing(address=...) is needed to ask "
                         "about this member")
