"""A directory of files swapped all at once, in kubelet's layout for ConfigMap volumes.

``<dir>/..<timestamp>/`` holds one version's files, ``<dir>/..data`` links to the current one and
``<dir>/<key>`` links to ``..data/<key>``. A new version is a new timestamped directory and one
rename of the ``..data`` link, so a reader never sees half of one version and half of another; the
same readers that work on a mounted ConfigMap (``controller.client.MountedRing``) work here.
"""

from __future__ import annotations

import datetime
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

DATA = "..data"


class AtomicDir:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def read(self) -> dict[str, str] | None:
        """The files of the current version, or None when nothing was ever written here."""
        current = self.path / DATA
        if not current.is_dir():
            return None
        return {entry.name: entry.read_text() for entry in sorted(current.iterdir())
                if entry.is_file()}

    def write(self, files: Mapping[str, str]) -> bool:
        """Make ``files`` the current version; False (and nothing touched) if it already is."""
        if self.read() == dict(files):
            return False
        for key in files:
            if not key or key.startswith(".") or "/" in key:
                raise ValueError(f"{key!r} cannot be a file name in {self.path}")
        self.path.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now(datetime.UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
        version = self.path / stamp
        version.mkdir()
        for key, text in files.items():
            (version / key).write_text(text)
        previous = self._target()
        link = self.path / "..data_tmp"
        link.unlink(missing_ok=True)
        link.symlink_to(stamp)
        os.replace(link, self.path / DATA)  # the one step that switches versions
        for key in files:
            visible = self.path / key
            if not visible.is_symlink():
                visible.symlink_to(f"{DATA}/{key}")
        for entry in self.path.iterdir():
            if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in files:
                entry.unlink()
        if previous is not None and previous != stamp:
            shutil.rmtree(self.path / previous, ignore_errors=True)
        return True

    def _target(self) -> str | None:
        try:
            return os.readlink(self.path / DATA)
        except OSError:
            return None
